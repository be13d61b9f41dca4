"""Patient documents: uploads kept in the storage backend, checksummed, linked to a patient."""
