"""The composition root: every domain's part in the application, listed once, wired explicitly.

Nothing registers itself at import: the HTTP app (`hims.app.create_app`), the `hims` command and
the test harness call `wire()` at start, and read the lists below. A domain added to the system
is added here.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter

from hims.core import records
from hims.fhir import storage as fhir_storage
from hims.fhir.adapters.patients import PatientAdapter
from hims.fhir.adapters.practice import (
    AppointmentAdapter,
    LocationAdapter,
    OrganizationAdapter,
    PractitionerAdapter,
)
from hims.fhir.domain import Adapter, FhirView
from hims.patients.service import Mover
from hims.scheduling import service as scheduling

#: The FHIR types that are domain records, each mapped onto its domain's service.
ADAPTERS: tuple[Adapter, ...] = (
    OrganizationAdapter(),
    LocationAdapter(),
    PractitionerAdapter(),
    PatientAdapter(),
    AppointmentAdapter(),
)

#: What moves a merged patient's records to the survivor, per domain (in this order).
MERGE_MOVERS: tuple[tuple[str, Mover], ...] = (("scheduling.appointments", scheduling.move_patient_records),)


def routers() -> Sequence[APIRouter]:
    """The HTTP routers, in matching order."""
    from hims.clinical import routes as clinical
    from hims.consultations import routes as consultations
    from hims.documents import routes as documents
    from hims.fhir import routes as fhir
    from hims.ops import routes as ops
    from hims.patients import routes as patients
    from hims.practitioners import routes as practitioners
    from hims.scheduling import routes as scheduling

    return (
        ops.router,
        patients.router,
        practitioners.router,
        scheduling.router,
        documents.router,
        fhir.router,
        consultations.router,
        clinical.router,
    )


def wire() -> None:
    """Install the record views and FHIR storages (idempotent; every entry point calls it)."""
    fhir_storage.install(ADAPTERS)
    records.install_views({adapter.table: FhirView(adapter) for adapter in ADAPTERS})
