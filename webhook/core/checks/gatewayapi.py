"""Checks for gatewayapi (being written)."""
