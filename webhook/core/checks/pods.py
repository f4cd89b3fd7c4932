"""Checks for pods (being written)."""
