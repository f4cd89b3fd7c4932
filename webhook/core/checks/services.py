"""Checks for services (being written)."""
