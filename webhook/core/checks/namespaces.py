"""Checks for namespaces (being written)."""
