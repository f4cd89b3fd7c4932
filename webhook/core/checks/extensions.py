"""Checks for extensions (being written)."""
