"""Checks for gateways (being written)."""
