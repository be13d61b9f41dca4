"""Patients: registration, search, duplicates and merge."""
