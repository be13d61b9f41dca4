"""Patient documents: uploads kept in the storage backend, checksummed, linked to a patient."""

from hims.documents import merge as _merge  # noqa: F401  (registers the patient-merge hook)
