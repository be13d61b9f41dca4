"""One adapter per FHIR type that is a domain record (`hims.fhir.domain.Adapter`); the composition
root (`hims.composition`) lists them."""
