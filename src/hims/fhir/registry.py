"""What the server supports, in one place: resource types, interactions, search parameters.

The CapabilityStatement is generated from this module, and search extraction and query
building read the same definitions, so what we advertise is what we do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ParamType = Literal["string", "token", "date", "reference", "quantity", "number", "uri"]

#: Every R4 (4.0.1) resource type.
RESOURCE_TYPES: frozenset[str] = frozenset(
    {
        "Account",
        "ActivityDefinition",
        "AdverseEvent",
        "AllergyIntolerance",
        "Appointment",
        "AppointmentResponse",
        "AuditEvent",
        "Basic",
        "Binary",
        "BiologicallyDerivedProduct",
        "BodyStructure",
        "Bundle",
        "CapabilityStatement",
        "CarePlan",
        "CareTeam",
        "CatalogEntry",
        "ChargeItem",
        "ChargeItemDefinition",
        "Claim",
        "ClaimResponse",
        "ClinicalImpression",
        "CodeSystem",
        "Communication",
        "CommunicationRequest",
        "CompartmentDefinition",
        "Composition",
        "ConceptMap",
        "Condition",
        "Consent",
        "Contract",
        "Coverage",
        "CoverageEligibilityRequest",
        "CoverageEligibilityResponse",
        "DetectedIssue",
        "Device",
        "DeviceDefinition",
        "DeviceMetric",
        "DeviceRequest",
        "DeviceUseStatement",
        "DiagnosticReport",
        "DocumentManifest",
        "DocumentReference",
        "EffectEvidenceSynthesis",
        "Encounter",
        "Endpoint",
        "EnrollmentRequest",
        "EnrollmentResponse",
        "EpisodeOfCare",
        "EventDefinition",
        "Evidence",
        "EvidenceVariable",
        "ExampleScenario",
        "ExplanationOfBenefit",
        "FamilyMemberHistory",
        "Flag",
        "Goal",
        "GraphDefinition",
        "Group",
        "GuidanceResponse",
        "HealthcareService",
        "ImagingStudy",
        "Immunization",
        "ImmunizationEvaluation",
        "ImmunizationRecommendation",
        "ImplementationGuide",
        "InsurancePlan",
        "Invoice",
        "Library",
        "Linkage",
        "List",
        "Location",
        "Measure",
        "MeasureReport",
        "Media",
        "Medication",
        "MedicationAdministration",
        "MedicationDispense",
        "MedicationKnowledge",
        "MedicationRequest",
        "MedicationStatement",
        "MedicinalProduct",
        "MedicinalProductAuthorization",
        "MedicinalProductContraindication",
        "MedicinalProductIndication",
        "MedicinalProductIngredient",
        "MedicinalProductInteraction",
        "MedicinalProductManufactured",
        "MedicinalProductPackaged",
        "MedicinalProductPharmaceutical",
        "MedicinalProductUndesirableEffect",
        "MessageDefinition",
        "MessageHeader",
        "MolecularSequence",
        "NamingSystem",
        "NutritionOrder",
        "Observation",
        "ObservationDefinition",
        "OperationDefinition",
        "OperationOutcome",
        "Organization",
        "OrganizationAffiliation",
        "Parameters",
        "Patient",
        "PaymentNotice",
        "PaymentReconciliation",
        "Person",
        "PlanDefinition",
        "Practitioner",
        "PractitionerRole",
        "Procedure",
        "Provenance",
        "Questionnaire",
        "QuestionnaireResponse",
        "RelatedPerson",
        "RequestGroup",
        "ResearchDefinition",
        "ResearchElementDefinition",
        "ResearchStudy",
        "ResearchSubject",
        "RiskAssessment",
        "RiskEvidenceSynthesis",
        "Schedule",
        "SearchParameter",
        "ServiceRequest",
        "Slot",
        "Specimen",
        "SpecimenDefinition",
        "StructureDefinition",
        "StructureMap",
        "Subscription",
        "Substance",
        "SubstanceNucleicAcid",
        "SubstancePolymer",
        "SubstanceProtein",
        "SubstanceReferenceInformation",
        "SubstanceSourceMaterial",
        "SubstanceSpecification",
        "SupplyDelivery",
        "SupplyRequest",
        "Task",
        "TerminologyCapabilities",
        "TestReport",
        "TestScript",
        "ValueSet",
        "VerificationResult",
        "VisionPrescription",
    }
)

#: Interactions every stored type supports (CapabilityStatement.rest.resource.interaction).
TYPE_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)

#: Elements that point at the patient a resource belongs to (its Patient compartment).
COMPARTMENT_PATHS = ("subject", "patient", "beneficiary", "individual", "for", "who")


@dataclass(frozen=True)
class SearchParam:
    """One search parameter: its type and the element paths (dot separated; ``[x]`` = choice)."""

    name: str
    type: ParamType
    paths: tuple[str, ...]
    targets: tuple[str, ...] = ()  # reference params: allowed target types (empty: any)
    documentation: str = ""


@dataclass
class TypeDef:
    """A resource type: its search parameters and its per-type policy.

    ``interactions`` are the only ones served (others answer 405); ``read_permission`` is what a
    read or search needs on top of the route's own check; ``source`` names the table a read-only
    type is rendered from (None: the versioned JSONB store, with history, includes and
    ``_lastUpdated``); ``phi`` says whether reading it is PHI access to log.
    """

    name: str
    params: dict[str, SearchParam] = field(default_factory=dict)
    interactions: tuple[str, ...] = TYPE_INTERACTIONS
    read_permission: str = "fhir:read"
    source: str | None = None
    phi: bool = True


def _p(name: str, type_: ParamType, *paths: str, targets: tuple[str, ...] = ()) -> SearchParam:
    return SearchParam(name, type_, tuple(paths), targets)


#: Parameters whose values live on fhir_resources itself (not in the index tables).
SPECIAL_PARAMS: dict[str, SearchParam] = {
    "_id": _p("_id", "token", "id"),
    "_lastUpdated": _p("_lastUpdated", "date", "meta.lastUpdated"),
}

_DATE_PATHS = (
    "effective[x]",
    "date",
    "authoredOn",
    "recordedDate",
    "onset[x]",
    "performed[x]",
    "occurrence[x]",
    "period",
    "created",
    "issued",
    "billablePeriod",
    "recorded",
    "started",
    "sent",
    "start",
    "birthDate",
)

_GENERIC = (
    _p("patient", "reference", "subject", "patient", "beneficiary", targets=("Patient",)),
    _p("subject", "reference", "subject"),
    _p("encounter", "reference", "encounter", "context"),
    _p("date", "date", *_DATE_PATHS),
    _p("code", "token", "code", "vaccineCode", "medication[x]"),
    _p("type", "token", "type"),
    _p("category", "token", "category"),
    _p("status", "token", "status"),
    _p("identifier", "token", "identifier"),
)

#: The R4 parameters of every resource that live in ``meta``. Patient leaves out most of
#: `_GENERIC` (its paths mean other things there); these it has like every stored type.
_META = (
    _p("_tag", "token", "meta.tag"),
    _p("_security", "token", "meta.security"),
    _p("_profile", "uri", "meta.profile"),
    _p("_source", "uri", "meta.source"),
)

#: Canonical resources (terminology, profiles, forms, knowledge artifacts): found by their
#: canonical URL, version and computer name.
CANONICAL_TYPES = (
    "ActivityDefinition",
    "CapabilityStatement",
    "ChargeItemDefinition",
    "CodeSystem",
    "CompartmentDefinition",
    "ConceptMap",
    "EffectEvidenceSynthesis",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "GraphDefinition",
    "ImplementationGuide",
    "Library",
    "Measure",
    "MessageDefinition",
    "OperationDefinition",
    "PlanDefinition",
    "Questionnaire",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "RiskEvidenceSynthesis",
    "SearchParameter",
    "StructureDefinition",
    "StructureMap",
    "TerminologyCapabilities",
    "TestScript",
    "ValueSet",
)
_CANONICAL = (
    _p("url", "uri", "url"),
    _p("version", "token", "version"),
    _p("name", "string", "name"),
    _p("title", "string", "title"),
)

_NAME = ("name",)
_ADDRESS = ("address",)

_SPECIFIC: dict[str, tuple[SearchParam, ...]] = {
    "Patient": (
        _p("name", "string", *_NAME),
        _p("family", "string", "name.family"),
        _p("given", "string", "name.given"),
        _p("address", "string", *_ADDRESS),
        _p("address-city", "string", "address.city"),
        _p("address-state", "string", "address.state"),
        _p("address-postalcode", "string", "address.postalCode"),
        _p("address-country", "string", "address.country"),
        _p("birthdate", "date", "birthDate"),
        _p("death-date", "date", "deceased[x]"),
        _p("gender", "token", "gender"),
        _p("identifier", "token", "identifier"),
        _p("telecom", "token", "telecom"),
        _p("phone", "token", "telecom"),
        _p("email", "token", "telecom"),
        _p("active", "token", "active"),
        _p("general-practitioner", "reference", "generalPractitioner"),
        _p("organization", "reference", "managingOrganization", targets=("Organization",)),
        _p("link", "reference", "link.other"),
    ),
    "Practitioner": (
        _p("name", "string", *_NAME),
        _p("family", "string", "name.family"),
        _p("given", "string", "name.given"),
        _p("address", "string", *_ADDRESS),
        _p("identifier", "token", "identifier"),
        _p("gender", "token", "gender"),
        _p("active", "token", "active"),
        _p("telecom", "token", "telecom"),
    ),
    "PractitionerRole": (
        _p("practitioner", "reference", "practitioner", targets=("Practitioner",)),
        _p("organization", "reference", "organization", targets=("Organization",)),
        _p("location", "reference", "location", targets=("Location",)),
        _p("role", "token", "code"),
        _p("specialty", "token", "specialty"),
        _p("identifier", "token", "identifier"),
        _p("active", "token", "active"),
    ),
    "Organization": (
        _p("name", "string", "name", "alias"),
        _p("address", "string", *_ADDRESS),
        _p("address-city", "string", "address.city"),
        _p("identifier", "token", "identifier"),
        _p("type", "token", "type"),
        _p("active", "token", "active"),
        _p("partof", "reference", "partOf", targets=("Organization",)),
    ),
    "Location": (
        _p("name", "string", "name", "alias"),
        _p("address", "string", *_ADDRESS),
        _p("address-city", "string", "address.city"),
        _p("identifier", "token", "identifier"),
        _p("type", "token", "type"),
        _p("status", "token", "status"),
        _p("organization", "reference", "managingOrganization", targets=("Organization",)),
        _p("partof", "reference", "partOf", targets=("Location",)),
    ),
    "Encounter": (
        _p("date", "date", "period"),
        _p("class", "token", "class"),
        _p("type", "token", "type"),
        _p("status", "token", "status"),
        _p("reason-code", "token", "reasonCode"),
        _p("practitioner", "reference", "participant.individual", targets=("Practitioner",)),
        _p("participant", "reference", "participant.individual"),
        _p("service-provider", "reference", "serviceProvider", targets=("Organization",)),
        _p("location", "reference", "location.location", targets=("Location",)),
    ),
    "Observation": (
        _p("date", "date", "effective[x]"),
        _p("code", "token", "code"),
        _p("category", "token", "category"),
        _p("value-quantity", "quantity", "valueQuantity", "component.valueQuantity"),
        _p("value-concept", "token", "valueCodeableConcept"),
        _p("component-code", "token", "component.code"),
        _p("performer", "reference", "performer"),
        _p("based-on", "reference", "basedOn"),
        _p("has-member", "reference", "hasMember"),
    ),
    "MedicationRequest": (
        _p("authoredon", "date", "authoredOn"),
        _p("date", "date", "dosageInstruction.timing.event"),
        _p("intent", "token", "intent"),
        _p("requester", "reference", "requester"),
        _p("medication", "reference", "medicationReference"),
        _p("code", "token", "medicationCodeableConcept"),
    ),
    "Condition": (
        _p("clinical-status", "token", "clinicalStatus"),
        _p("verification-status", "token", "verificationStatus"),
        _p("onset-date", "date", "onset[x]"),
        _p("recorded-date", "date", "recordedDate"),
        _p("abatement-date", "date", "abatement[x]"),
        _p("date", "date", "onset[x]", "recordedDate"),
    ),
    "AllergyIntolerance": (
        _p("clinical-status", "token", "clinicalStatus"),
        _p("criticality", "token", "criticality"),
        _p("date", "date", "recordedDate"),
    ),
    "DiagnosticReport": (
        _p("result", "reference", "result", targets=("Observation",)),
        _p("issued", "date", "issued"),
        _p("performer", "reference", "performer"),
    ),
    "Procedure": (_p("date", "date", "performed[x]"),),
    "Immunization": (_p("date", "date", "occurrence[x]"), _p("vaccine-code", "token", "vaccineCode")),
    "Claim": (
        _p("created", "date", "created"),
        _p("provider", "reference", "provider"),
        _p("use", "token", "use"),
    ),
    "ExplanationOfBenefit": (
        _p("created", "date", "created"),
        _p("claim", "reference", "claim", targets=("Claim",)),
        _p("provider", "reference", "provider"),
    ),
    "CarePlan": (_p("date", "date", "period"), _p("care-team", "reference", "careTeam")),
    "Goal": (_p("lifecycle-status", "token", "lifecycleStatus"), _p("start-date", "date", "start[x]")),
    "ImagingStudy": (_p("started", "date", "started"),),
    "DocumentReference": (_p("date", "date", "date"), _p("author", "reference", "author")),
    "Appointment": (
        _p("date", "date", "start"),
        _p("actor", "reference", "participant.actor"),
        _p("patient", "reference", "participant.actor", targets=("Patient",)),
        _p("practitioner", "reference", "participant.actor", targets=("Practitioner",)),
    ),
    "ServiceRequest": (_p("authored", "date", "authoredOn"), _p("requester", "reference", "requester")),
    "Group": (_p("member", "reference", "member.entity"),),
    "Provenance": (
        _p("target", "reference", "target"),
        _p("patient", "reference", "target", targets=("Patient",)),
        _p("recorded", "date", "recorded"),
    ),
    "RelatedPerson": (_p("name", "string", *_NAME), _p("patient", "reference", "patient")),
    "RiskAssessment": (
        _p("probability", "number", "prediction.probability[x]"),
        _p("risk", "token", "prediction.qualitativeRisk"),
    ),
}

#: AuditEvent is rendered from ``phi_access_log`` (hims.fhir.audit_storage), read-only.
_AUDIT_EVENT = (
    SearchParam(
        "date",
        "date",
        ("recorded",),
        documentation="When the access happened (prefixes eq ne lt gt le ge sa eb ap)",
    ),
    SearchParam(
        "patient",
        "reference",
        ("entity.what",),
        ("Patient",),
        "The patient whose record was accessed: Patient/<id> or <id>",
    ),
    SearchParam(
        "agent",
        "reference",
        ("agent.who",),
        documentation="The user account's UUID (also agent:identifier=https://hims.arocord.com/fhir/sid/user|<uuid>)",
    ),
    SearchParam("entity", "reference", ("entity.what",), documentation="The resource accessed (Type/id)"),
    SearchParam("outcome", "token", ("outcome",), documentation="0 success, 4 denied, 8 error"),
    SearchParam("action", "token", ("action",), documentation="C R U D E"),
    SearchParam(
        "subtype", "token", ("subtype",), documentation="The log's action: read, search, create, ..."
    ),
)


def _build() -> dict[str, TypeDef]:
    defs: dict[str, TypeDef] = {}
    for name in sorted(RESOURCE_TYPES):
        type_def = TypeDef(name)
        if name == "AuditEvent":
            type_def = TypeDef(
                name,
                {p.name: p for p in _AUDIT_EVENT},
                interactions=("read", "search-type"),
                read_permission="audit:read",
                source="phi_access_log",
                phi=False,
            )
            defs[name] = type_def
            continue
        if name != "Patient":
            for param in _GENERIC:
                type_def.params[param.name] = param
        else:
            for param in _GENERIC:
                if param.name in ("identifier",):
                    type_def.params[param.name] = param
        for param in _META + (_CANONICAL if name in CANONICAL_TYPES else ()):
            type_def.params[param.name] = param
        for param in _SPECIFIC.get(name, ()):
            type_def.params[param.name] = param
        defs[name] = type_def
    return defs


TYPES: dict[str, TypeDef] = _build()


def type_def(resource_type: str) -> TypeDef:
    """The definition of a known resource type (callers check the type first)."""
    return TYPES[resource_type]


def search_param(resource_type: str, name: str) -> SearchParam | None:
    """The definition of ``name`` on ``resource_type`` (including _id and _lastUpdated)."""
    if name in SPECIAL_PARAMS:
        return SPECIAL_PARAMS[name]
    type_def = TYPES.get(resource_type)
    return type_def.params.get(name) if type_def else None


#: Parameters that control the search rather than filter it.
RESULT_PARAMS = frozenset(
    {
        "_count",
        "_sort",
        "_include",
        "_revinclude",
        "_elements",
        "_summary",
        "_total",
        "_format",
        "_pretty",
        "_cursor",
        "_since",
        "_type",
    }
)
