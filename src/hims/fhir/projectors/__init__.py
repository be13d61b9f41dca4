"""The projected FHIR types, one module per domain (imported here so registering happens once)."""

from hims.fhir.projectors import orders, patients

__all__ = ["orders", "patients"]
