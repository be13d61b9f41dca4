"""The composition root: every domain's part in the application, listed once, wired explicitly.

Nothing registers itself at import: the HTTP app (`hims.app.create_app`), the `hims` command and
the test harness call `wire()` at start, and read the lists below. A domain added to the system
is added here.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import APIRouter

from hims.clinical import seed as clinical_seed
from hims.clinical import service as clinical
from hims.consultations import service as consultations
from hims.core import records
from hims.documents import service as documents
from hims.fhir import storage as fhir_storage
from hims.fhir.adapters.clinical import AllergyAdapter, ConditionAdapter, EncounterAdapter, ObservationAdapter
from hims.fhir.adapters.orders import (
    DocumentReferenceAdapter,
    MedicationRequestAdapter,
    ServiceRequestAdapter,
)
from hims.fhir.adapters.patients import PatientAdapter
from hims.fhir.adapters.practice import (
    AppointmentAdapter,
    LocationAdapter,
    OrganizationAdapter,
    PractitionerAdapter,
)
from hims.fhir.domain import Adapter, FhirView
from hims.identity import seed as identity_seed
from hims.ops import partitions
from hims.ops.migrate import VerifyCheck
from hims.patients import seed as patients_seed
from hims.patients.service import Mover
from hims.practitioners import seed as practitioners_seed
from hims.scheduling import seed as scheduling_seed
from hims.scheduling import service as scheduling
from hims.seed import SeedStep

#: The FHIR types that are domain records, each mapped onto its domain's service.
ADAPTERS: tuple[Adapter, ...] = (
    OrganizationAdapter(),
    LocationAdapter(),
    PractitionerAdapter(),
    PatientAdapter(),
    AppointmentAdapter(),
    EncounterAdapter(),
    ObservationAdapter(),
    ConditionAdapter(),
    AllergyAdapter(),
    MedicationRequestAdapter(),
    ServiceRequestAdapter(),
    DocumentReferenceAdapter(),
)

#: What runs after `hims db migrate` (each returns a line to print, or None).
AFTER_MIGRATE: tuple[tuple[str, Callable[[str], Coroutine[Any, Any, str | None]]], ...] = (
    ("consultation partitions", partitions.after_migrate),
)

#: What `hims db verify` checks beyond migrations and models (problem lines).
VERIFY_CHECKS: tuple[VerifyCheck, ...] = (consultations.partition_problems,)

#: What moves a merged patient's records to the survivor, per domain (in this order).
MERGE_MOVERS: tuple[tuple[str, Mover], ...] = (
    ("scheduling.appointments", scheduling.move_patient_records),
    ("consultations", consultations.move_patient_records),
    ("clinical", clinical.move_patient_records),
    ("documents", documents.move_patient_records),
)


#: `hims db seed`: reference data, then demo data (development and test only), in this order.
SEEDERS: tuple[SeedStep, ...] = (
    SeedStep("facilities and departments", practitioners_seed.seed_reference, demo=False),
    SeedStep("code lists", clinical_seed.seed_code_lists, demo=False),
    SeedStep("demo users", identity_seed.seed_users, demo=True),
    SeedStep("demo practitioners", practitioners_seed.seed_practitioners, demo=True),
    SeedStep("demo patients", patients_seed.seed_patients, demo=True),
    SeedStep("demo appointments", scheduling_seed.seed_appointments, demo=True),
    SeedStep("demo clinical history", clinical_seed.seed_clinical_history, demo=True),
)


def routers() -> Sequence[APIRouter]:
    """The REST routers of the domains, busiest first (FastAPI tries them in this order)."""
    from hims.clinical import routes as clinical
    from hims.consultations import routes as consultations
    from hims.documents import routes as documents
    from hims.patients import routes as patients
    from hims.practitioners import routes as practitioners
    from hims.scheduling import routes as scheduling

    return (
        patients.router,
        clinical.router,
        consultations.router,
        scheduling.router,
        documents.router,
        practitioners.router,
    )


def wire() -> None:
    """Install the record views and FHIR storages (idempotent; every entry point calls it)."""
    fhir_storage.install(ADAPTERS)
    records.install_views({adapter.table: FhirView(adapter) for adapter in ADAPTERS})
