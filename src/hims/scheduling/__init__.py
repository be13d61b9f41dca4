"""Appointments: booking, rescheduling, check-in; double booking refused by the database."""

from hims.scheduling import merge as _merge  # noqa: F401  (registers the patient-merge hook)
