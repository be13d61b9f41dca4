"""MedicationRequest, ServiceRequest and DocumentReference ↔ their domains.

* MedicationRequest ↔ prescriptions: an order (intent ``order``) with a known status, a named
  drug and a structured dose is a prescription; the allergy check and the status transitions are
  the clinical domain's.
* ServiceRequest ↔ lab orders: a LOINC-coded order; a resulted order also renders as its result
  Observation and DiagnosticReport (same id, same version).
* DocumentReference ↔ documents: only an upload creates a document (a row needs a file we hold),
  so a new DocumentReference stays in the FHIR store; an update of a document may not change its file.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from hims.clinical import service as clinical
from hims.core.records import Row
from hims.core.security import Actor
from hims.documents import service as documents
from hims.fhir.adapters.clinical import _ClinicalAdapter
from hims.fhir.domain import Adapter, Item
from hims.fhir.mappings import document_reference, lab, medication_request
from hims.fhir.mappings._common import pick_coding

#: FHIR statuses that map onto a prescription's without loss of meaning (draft, unknown... do not).
_PRESCRIPTION_STATUSES = frozenset(
    {"active", "on-hold", "completed", "cancelled", "stopped", "entered-in-error"}
)
_LAB_STATUSES = frozenset({"active", "completed", "revoked", "entered-in-error"})


class MedicationRequestAdapter(_ClinicalAdapter):
    """MedicationRequest ↔ prescriptions."""

    resource_type = "MedicationRequest"
    table = "prescriptions"
    rank = 90
    mapping = medication_request

    def screen(self, resource: dict[str, Any]) -> str | None:
        """An order with a known status, a drug and a structured dose."""
        if resource.get("intent") != "order" or resource.get("status") not in _PRESCRIPTION_STATUSES:
            return "only an order with a known status is a prescription"
        values = medication_request.to_row(resource)
        if not values["drug_name"] or values["dose_value"] is None or not values["dose_unit"]:
            return "a prescription names a drug and a structured dose"
        return None

    def is_deleted(self, row: Row) -> bool:
        """A deleted prescription stays (an allergy override may refer to it) but reads as deleted."""
        return row.get("deleted_at") is not None

    async def create(self, conn: asyncpg.Connection, actor: Actor, items: Sequence[Item]) -> list[Row]:
        """Prescribe (the allergy check applies; only REST can record an override)."""
        results = await clinical.prescribe_many(conn=conn, actor=actor, items=self._new(items))
        return [r.prescription for r in results]

    async def update(
        self, conn: asyncpg.Connection, actor: Actor, changes: Sequence[tuple[Row, Item]]
    ) -> list[Row | None]:
        """A prescription's next version (transitions and the allergy check apply)."""
        return [
            await clinical.revise_prescription(
                conn=conn, actor=actor, prior=prior, changes=item.values, extra=item.extra, keep_extra=False
            )
            for prior, item in changes
        ]

    async def delete(self, conn: asyncpg.Connection, actor: Actor, priors: Sequence[Row]) -> list[Row | None]:
        """Cancel and hide the prescriptions."""
        return [await clinical.remove_prescription(conn=conn, actor=actor, prior=prior) for prior in priors]


class ServiceRequestAdapter(_ClinicalAdapter):
    """ServiceRequest ↔ lab orders (+ the result Observation and DiagnosticReport)."""

    resource_type = "ServiceRequest"
    table = "lab_orders"
    rank = 90
    mapping = lab

    def screen(self, resource: dict[str, Any]) -> str | None:
        """A LOINC-coded order with a known status (imaging, referrals... are not lab orders)."""
        if resource.get("intent") != "order" or resource.get("status") not in _LAB_STATUSES:
            return "only an order with a known status is a lab order"
        if pick_coding(resource.get("code"), lab.LOINC).get("system") != lab.LOINC:
            return "a lab order is coded in LOINC"
        return None

    def is_deleted(self, row: Row) -> bool:
        """A deleted order stays, cancelled, and reads as deleted."""
        return row.get("deleted_at") is not None

    def derived(self, row: Row) -> list[dict[str, Any]]:
        """A resulted order's Observation and DiagnosticReport."""
        if row.get("status") != "resulted":
            return []
        return [r for r in (lab.result_observation(row), lab.diagnostic_report(row)) if r is not None]

    async def create(self, conn: asyncpg.Connection, actor: Actor, items: Sequence[Item]) -> list[Row]:
        """Order the tests."""
        return await clinical.order_labs(conn=conn, actor=actor, items=self._new(items))

    async def update(
        self, conn: asyncpg.Connection, actor: Actor, changes: Sequence[tuple[Row, Item]]
    ) -> list[Row | None]:
        """An order's next version (it only moves forward)."""
        return [
            await clinical.revise_lab(
                conn=conn, actor=actor, prior=prior, changes=item.values, extra=item.extra, keep_extra=False
            )
            for prior, item in changes
        ]

    async def delete(self, conn: asyncpg.Connection, actor: Actor, priors: Sequence[Row]) -> list[Row | None]:
        """Cancel and hide the orders (a resulted one: 409)."""
        return [await clinical.remove_lab(conn=conn, actor=actor, prior=prior) for prior in priors]


class DocumentReferenceAdapter(Adapter):
    """DocumentReference ↔ documents."""

    resource_type = "DocumentReference"
    table = "documents"
    rank = 90
    #: A document comes to exist only by an upload of its file.
    creates = False
    patient_column = "patient_id"

    def values(self, resource: dict[str, Any]) -> Row:
        """The document's columns; a file element the resource leaves out is None (kept)."""
        values = document_reference.to_row(resource)
        attachment = ((resource.get("content") or [{}])[0]).get("attachment") or {}
        if "contentType" not in attachment:
            values["content_type"] = None
        return values

    def extra(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        """What the row does not hold."""
        return document_reference.extra(resource) or None  # noqa: S610 (a FHIR mapping, not Django)

    def render(self, row: Row) -> dict[str, Any]:
        """The DocumentReference of a document."""
        return document_reference.to_resource(row, extra=row.get("extra"))

    def is_deleted(self, row: Row) -> bool:
        """A deleted document reads as deleted."""
        return row.get("deleted_at") is not None

    async def load(
        self, conn: asyncpg.Connection, ids: Sequence[uuid.UUID], *, lock: bool
    ) -> dict[uuid.UUID, Row]:
        """The documents' rows."""
        return await documents.load(conn, ids, lock=lock)

    async def update(
        self, conn: asyncpg.Connection, actor: Actor, changes: Sequence[tuple[Row, Item]]
    ) -> list[Row | None]:
        """A document's next version (never a different file)."""
        return [
            await documents.revise_document(
                conn=conn, actor=actor, prior=prior, changes=item.values, extra=item.extra, keep_extra=False
            )
            for prior, item in changes
        ]

    async def delete(self, conn: asyncpg.Connection, actor: Actor, priors: Sequence[Row]) -> list[Row | None]:
        """Soft delete (the file is retained)."""
        return [await documents.remove_document(conn=conn, actor=actor, prior=prior) for prior in priors]
