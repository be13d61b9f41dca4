"""Keyword-only factories writing through the domain services (so through every rule and the PHI
log, as a script run by an operator would), on a driver connection the caller holds.

Rows come back as dicts (column → value).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from hims.clinical import service as clinical
from hims.consultations import service as consultations
from hims.core.security import Actor
from hims.patients import service as patients
from hims.practitioners import service as practitioners
from hims.scheduling import service as scheduling

Row = dict[str, Any]

#: Who the factories write as: a script, so logged with channel ``cli``.
ACTOR = Actor.system("test-factory", channel="cli")


async def make_patient(
    conn: asyncpg.Connection, *, given_name: str = "Ada", family_name: str = "Okafor", **fields: Any
) -> Row:
    """A registered patient (no duplicate check: tests make many people of one name)."""
    values = {
        "given_name": given_name,
        "family_name": family_name,
        "date_of_birth": date(1980, 5, 17),
        "sex_at_birth": "female",
        **fields,
    }
    return await patients.register(conn=conn, actor=ACTOR, values=values, check_duplicates=False)


async def make_practitioner(conn: asyncpg.Connection, *, family_name: str = "House", **fields: Any) -> Row:
    """A registered physician."""
    values = {"given_name": "Gregory", "family_name": family_name, "profession": "physician", **fields}
    (row,) = await practitioners.register_practitioners(
        conn=conn, actor=ACTOR, news=[practitioners.New(values)]
    )
    return row


async def make_consultation(
    conn: asyncpg.Connection, *, patient_id: uuid.UUID, started_at: datetime | None = None, **fields: Any
) -> Row:
    """An open walk-in consultation (the year's partition must exist)."""
    values = {
        "patient_id": patient_id,
        "started_at": started_at or datetime.now(UTC),
        "kind": "walk_in",
        "status": "in_progress",
        **fields,
    }
    (row,) = await consultations.open_consultations(
        conn=conn, actor=ACTOR, openings=[consultations.Opening(values)]
    )
    return row


async def make_clinical_history(conn: asyncpg.Connection, *, patient_id: uuid.UUID, count: int) -> None:
    """``count`` records of every kind (problems, allergies, prescriptions, vitals, labs, visits),
    and ``count`` upcoming appointments."""
    now = datetime.now(UTC).replace(microsecond=0)
    visits, problems, allergies, drugs, vitals, labs = [], [], [], [], [], []
    for i in range(count):
        when = now - timedelta(days=i)
        visits.append(
            consultations.Opening(
                {"patient_id": patient_id, "started_at": when, "kind": "walk_in", "status": "signed"}
            )
        )
        problems.append(
            clinical.New(
                {
                    "patient_id": patient_id,
                    "code": "E11.9",
                    "code_system": clinical.ICD10CM,
                    "display": "Type 2 diabetes mellitus without complications",
                    "clinical_status": "active",
                    "verification_status": "confirmed",
                }
            )
        )
        allergies.append(
            clinical.New(
                {
                    "patient_id": patient_id,
                    "substance": f"Substance {i}",
                    "severity": "mild",
                    "status": "active",
                }
            )
        )
        drugs.append(
            clinical.New(
                {
                    "patient_id": patient_id,
                    "drug_name": f"Drug {i}",
                    "dose_value": Decimal(5),
                    "dose_unit": "mg",
                    "status": "active",
                    "prescribed_at": when,
                }
            )
        )
        vitals.append(
            clinical.New(
                {
                    "patient_id": patient_id,
                    "group_id": uuid.uuid4(),
                    "code": "8867-4",
                    "display": "Heart rate",
                    "value": Decimal(60 + i % 40),
                    "unit": "/min",
                    "effective_at": when,
                }
            )
        )
        labs.append(
            clinical.New(
                {
                    "patient_id": patient_id,
                    "code": "2345-7",
                    "display": "Glucose",
                    "status": "ordered",
                    "ordered_at": when,
                }
            )
        )
    await consultations.open_consultations(conn=conn, actor=ACTOR, openings=visits)
    await clinical.add_conditions(conn=conn, actor=ACTOR, items=problems)
    await clinical.add_allergies(conn=conn, actor=ACTOR, items=allergies)
    await clinical.prescribe_many(conn=conn, actor=ACTOR, items=drugs)
    await clinical.record_observations(conn=conn, actor=ACTOR, items=vitals)
    await clinical.order_labs(conn=conn, actor=ACTOR, items=labs)
    practitioner = await make_practitioner(conn)
    for i in range(count):
        await make_appointment(
            conn,
            patient_id=patient_id,
            practitioner_id=practitioner["id"],
            starts_at=now + timedelta(days=i + 1),
        )


async def make_appointment(
    conn: asyncpg.Connection,
    *,
    patient_id: uuid.UUID,
    practitioner_id: uuid.UUID,
    starts_at: datetime | None = None,
    status: str = "booked",
) -> Row:
    """A booked appointment (30 minutes, in person)."""
    start = starts_at or datetime.now(UTC) + timedelta(days=1)
    values = {
        "patient_id": patient_id,
        "practitioner_id": practitioner_id,
        "starts_at": start,
        "ends_at": start + timedelta(minutes=30),
        "type": "in_person",
        "status": status,
    }
    (row,) = await scheduling.book(conn=conn, actor=ACTOR, news=[scheduling.New(values)])
    return row
