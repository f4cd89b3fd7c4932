"""Checks for virtualservices (being written)."""
