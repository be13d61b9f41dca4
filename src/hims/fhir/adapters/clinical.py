"""Encounter, Observation, Condition and AllergyIntolerance ↔ their domains.

* Encounter ↔ consultations (`hims.consultations.service`): an ambulatory (class AMB) Encounter
  that is ``in-progress`` or ``finished`` is a consultation; any other stays in the FHIR store.
* Observation ↔ observations (`hims.clinical.service`): a final vital sign coded in LOINC with
  one ``valueQuantity`` and a code the vital-signs table knows; other Observations (labs, surveys,
  panels with components) stay in the FHIR store.
* Condition ↔ conditions, AllergyIntolerance ↔ allergies (`hims.clinical.service`).

Every rule (ranges, flags, the signed-consultation lock, ...) is the domain's.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from hims.clinical import service as clinical
from hims.consultations import service as consultations
from hims.core.records import Row
from hims.core.security import Actor
from hims.fhir.domain import Adapter, Item
from hims.fhir.mappings import allergy_intolerance, condition, encounter, observation
from hims.fhir.mappings._common import pick_coding

#: Encounter statuses a consultation has.
_ENCOUNTER_STATUSES = ("in-progress", "finished")


class EncounterAdapter(Adapter):
    """Encounter ↔ consultations."""

    resource_type = "Encounter"
    table = "consultations"
    rank = 70
    patient_column = "patient_id"

    def screen(self, resource: dict[str, Any]) -> str | None:
        """Only an ambulatory encounter in progress or finished is a consultation."""
        if resource.get("status") not in _ENCOUNTER_STATUSES:
            return f"status {resource.get('status')!r} has no consultation"
        kind = resource.get("class")
        if not isinstance(kind, dict) or kind.get("code") != "AMB":
            return "only an ambulatory (AMB) encounter is a consultation"
        return None

    def values(self, resource: dict[str, Any]) -> Row:
        """The consultation's columns (never the SOAP note: it is not part of an Encounter)."""
        return encounter.to_row(resource)

    def extra(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        """Coded reasons, other participants, foreign elements."""
        return encounter.extra(resource) or None  # noqa: S610 (a FHIR mapping, not Django)

    def render(self, row: Row) -> dict[str, Any]:
        """The Encounter of a consultation."""
        return encounter.to_resource(row, extra=row.get("extra"))

    def row_sql(self, number: int) -> str:
        """The consultation read along, narrowed to its partition."""
        return consultations.row_subquery(number)

    async def load(
        self, conn: asyncpg.Connection, ids: Sequence[uuid.UUID], *, lock: bool
    ) -> dict[uuid.UUID, Row]:
        """The consultations' rows."""
        return await consultations.load(conn, ids, lock=lock)

    async def create(self, conn: asyncpg.Connection, actor: Actor, items: Sequence[Item]) -> list[Row]:
        """Open the consultations (one statement)."""
        openings = [consultations.Opening(i.values, id=i.id, version=i.version, extra=i.extra) for i in items]
        return await consultations.open_consultations(conn=conn, actor=actor, openings=openings)

    async def update(
        self, conn: asyncpg.Connection, actor: Actor, changes: Sequence[tuple[Row, Item]]
    ) -> list[Row | None]:
        """A FHIR update revises the consultation (the signed lock applies)."""
        return [
            await consultations.revise_consultation(
                conn=conn, actor=actor, prior=prior, changes=item.values, extra=item.extra, keep_extra=False
            )
            for prior, item in changes
        ]

    async def delete(self, conn: asyncpg.Connection, actor: Actor, priors: Sequence[Row]) -> list[Row | None]:
        """An unsigned consultation is removed; a signed one is 409."""
        return [
            await consultations.remove_consultation(conn=conn, actor=actor, prior=prior) for prior in priors
        ]


class _ClinicalAdapter(Adapter):
    """A clinical record type of `hims.clinical.service` (create, revise and remove functions)."""

    mapping: Any = None
    patient_column = "patient_id"

    def values(self, resource: dict[str, Any]) -> Row:
        """The row's columns (the mapping's ``to_row``)."""
        values: Row = self.mapping.to_row(resource)
        return values

    def extra(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        """What the row does not hold."""
        found: dict[str, Any] = self.mapping.extra(resource)  # noqa: S610 (a FHIR mapping, not Django)
        return found or None

    def render(self, row: Row) -> dict[str, Any]:
        """The resource of a row."""
        resource: dict[str, Any] = self.mapping.to_resource(row, extra=row.get("extra"))
        return resource

    async def load(
        self, conn: asyncpg.Connection, ids: Sequence[uuid.UUID], *, lock: bool
    ) -> dict[uuid.UUID, Row]:
        """The records' rows."""
        return await clinical.load(conn, self.resource_type, ids, lock=lock)

    def _new(self, items: Sequence[Item]) -> list[clinical.New]:
        return [clinical.New(i.values, id=i.id, version=i.version, extra=i.extra) for i in items]

    async def _link(self, conn: asyncpg.Connection, items: Sequence[Item]) -> None:
        """A record links to a consultation only when its Encounter is one (an emergency or
        inpatient Encounter lives in the FHIR store only): the reference to any other Encounter is
        kept with the elements the row does not hold. A consultation of another patient stays
        linked, for the domain to refuse."""
        linked = [i for i in items if i.values.get("consultation_id") is not None]
        if not linked:
            return
        owners = await consultations.consultation_owners(
            conn=conn, ids=[i.values["consultation_id"] for i in linked]
        )
        for item in linked:
            if item.values["consultation_id"] not in owners:
                item.values["consultation_id"] = None
                item.extra = {**(item.extra or {}), "encounter": item.resource["encounter"]}

    async def prepare(self, conn: asyncpg.Connection, items: Sequence[Item]) -> None:
        """Resolve what the mapping alone cannot: the consultation links."""
        await self._link(conn, items)


def _is_vital_sign(resource: dict[str, Any]) -> bool:
    return any(
        coding.get("code") == "vital-signs"
        for cc in resource.get("category") or []
        for coding in cc.get("coding") or []
    )


class ObservationAdapter(_ClinicalAdapter):
    """Observation ↔ observations: one vital sign per record."""

    resource_type = "Observation"
    table = "observations"
    rank = 80
    mapping = observation

    def screen(self, resource: dict[str, Any]) -> str | None:
        """A final, single-valued vital sign of the vital-signs table (labs, surveys and panels are
        not records of ours)."""
        if resource.get("component"):
            return "a panel with components is several values, not one"
        if not _is_vital_sign(resource):
            return "only vital signs are recorded as observations"
        if resource.get("status") != "final":
            return "only a final observation is recorded"
        code = pick_coding(resource.get("code"), observation.LOINC)
        if code.get("system") != observation.LOINC or code.get("code") not in clinical.VITAL_CODES:
            return "not a vital sign the vital-signs table knows"
        if "valueQuantity" not in resource:
            return "no measured value"
        return None

    async def create(self, conn: asyncpg.Connection, actor: Actor, items: Sequence[Item]) -> list[Row]:
        """Record the vital signs (ranges checked, flags computed)."""
        return await clinical.record_observations(conn=conn, actor=actor, items=self._new(items))

    async def update(
        self, conn: asyncpg.Connection, actor: Actor, changes: Sequence[tuple[Row, Item]]
    ) -> list[Row | None]:
        """A corrected vital sign."""
        return [
            await clinical.revise_observation(
                conn=conn, actor=actor, prior=prior, changes=item.values, extra=item.extra, keep_extra=False
            )
            for prior, item in changes
        ]

    async def delete(self, conn: asyncpg.Connection, actor: Actor, priors: Sequence[Row]) -> list[Row | None]:
        """Remove the vital signs."""
        return [await clinical.remove_observation(conn=conn, actor=actor, prior=prior) for prior in priors]


class ConditionAdapter(_ClinicalAdapter):
    """Condition ↔ conditions (ICD-10-CM checked against the code set; SNOMED CT as given)."""

    resource_type = "Condition"
    table = "conditions"
    rank = 80
    mapping = condition

    def screen(self, resource: dict[str, Any]) -> str | None:
        """A condition coded in ICD-10-CM or SNOMED CT."""
        coding = pick_coding(resource.get("code"), condition.ICD10CM, condition.SNOMED)
        if coding.get("system") not in (condition.ICD10CM, condition.SNOMED) or not coding.get("code"):
            return "a condition is coded in ICD-10-CM or SNOMED CT"
        return None

    def is_deleted(self, row: Row) -> bool:
        """A withdrawn diagnosis (entered-in-error) reads as deleted."""
        return row.get("verification_status") == clinical.ENTERED_IN_ERROR

    async def create(self, conn: asyncpg.Connection, actor: Actor, items: Sequence[Item]) -> list[Row]:
        """Add the conditions."""
        return await clinical.add_conditions(conn=conn, actor=actor, items=self._new(items))

    async def update(
        self, conn: asyncpg.Connection, actor: Actor, changes: Sequence[tuple[Row, Item]]
    ) -> list[Row | None]:
        """A condition's next version."""
        return [
            await clinical.revise_condition(
                conn=conn, actor=actor, prior=prior, changes=item.values, extra=item.extra, keep_extra=False
            )
            for prior, item in changes
        ]

    async def delete(self, conn: asyncpg.Connection, actor: Actor, priors: Sequence[Row]) -> list[Row | None]:
        """Withdraw the diagnoses."""
        return [await clinical.remove_condition(conn=conn, actor=actor, prior=prior) for prior in priors]


class AllergyAdapter(_ClinicalAdapter):
    """AllergyIntolerance ↔ allergies."""

    resource_type = "AllergyIntolerance"
    table = "allergies"
    rank = 80
    mapping = allergy_intolerance

    async def create(self, conn: asyncpg.Connection, actor: Actor, items: Sequence[Item]) -> list[Row]:
        """Record the allergies."""
        return await clinical.add_allergies(conn=conn, actor=actor, items=self._new(items))

    async def update(
        self, conn: asyncpg.Connection, actor: Actor, changes: Sequence[tuple[Row, Item]]
    ) -> list[Row | None]:
        """An allergy's next version."""
        return [
            await clinical.revise_allergy(
                conn=conn, actor=actor, prior=prior, changes=item.values, extra=item.extra, keep_extra=False
            )
            for prior, item in changes
        ]

    async def delete(self, conn: asyncpg.Connection, actor: Actor, priors: Sequence[Row]) -> list[Row | None]:
        """Remove the allergies (409 when a prescriber overrode one)."""
        return [await clinical.remove_allergy(conn=conn, actor=actor, prior=prior) for prior in priors]
