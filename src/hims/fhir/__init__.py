"""FHIR R4 REST API: versioned resource store, search, bundles, $everything, Bulk $export."""
