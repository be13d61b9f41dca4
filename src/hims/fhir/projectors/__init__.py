"""The projected FHIR types, one module per domain (imported here so registering happens once)."""

from hims.fhir.projectors import clinical, orders, patients, practice

__all__ = ["clinical", "orders", "patients", "practice"]
