"""The projected FHIR types, one module per domain (imported here so registering happens once)."""

from hims.fhir.projectors import patients, practice

__all__ = ["patients", "practice"]
