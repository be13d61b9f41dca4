"""Reuse the clinical fixtures (tokens, partitions, patient)."""

from tests.clinical.conftest import partitions, patient_id, physician, sql  # noqa: F401
