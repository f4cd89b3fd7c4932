"""Checks for destinationrules (being written)."""
