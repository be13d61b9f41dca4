"""Clinical records: observations, conditions, allergies, prescriptions, labs, and the chart."""

from hims.clinical import merge as _merge  # noqa: F401  (registers the patient-merge hook)
