"""Checks for workloadentries (being written)."""
