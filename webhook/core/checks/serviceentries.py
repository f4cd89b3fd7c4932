"""Checks for serviceentries (being written)."""
