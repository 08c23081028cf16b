"""Plexica plugin SDK."""
