"""Consultations (encounters): SOAP notes, signing, amendments; range-partitioned by year."""

from hims.consultations import merge as _merge  # noqa: F401  (registers the patient-merge hook)
