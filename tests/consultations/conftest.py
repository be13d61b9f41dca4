"""Reuse the clinical fixtures (tokens, patient)."""

from tests.clinical.conftest import patient_id, physician, sql  # noqa: F401
