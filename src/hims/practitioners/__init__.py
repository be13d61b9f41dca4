"""Practitioners, facilities and departments."""
