"""Checks for sidecars (being written)."""
