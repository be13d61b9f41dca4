from __future__ import annotations

import uuid

from hims import composition
from tests.patients.factories import auth_headers, make_patient, make_practitioner, patient_body
from tests.support import count_rows as count
from tests.support import phi_rows


async def test_possible_duplicates_are_409_with_scored_candidates(client, settings, database_url) -> None:
    headers = auth_headers(settings, "receptionist")
    first = await make_patient(
        client,
        settings,
        family_name="Okonkwo",
        given_name="Chidinma",
        date_of_birth="1990-05-01",
        identifiers=[{"type": "national_id", "system": "urn:oid:2.16.566.1", "value": "NIN-123"}],
    )
    other = await make_patient(
        client, settings, family_name="Elsewhere", given_name="Sam", email="sam@example.org"
    )

    similar = patient_body(family_name="Okonkwo", given_name="Chidimma", date_of_birth="1990-05-01")
    response = await client.post("/api/v1/patients", json=similar, headers=headers)
    assert response.status_code == 409, response.text
    problem = response.json()
    assert problem["code"] == "possible_duplicates"
    [candidate] = problem["candidates"]
    assert candidate["id"] == first["id"]
    assert candidate["reasons"] == ["same_birth_date_similar_name", "name_typo"]
    assert 0.5 < candidate["score"] <= 1

    # A shared e-mail alone is a household, not a duplicate.
    same_email = await client.post(
        "/api/v1/patients",
        json=patient_body(email="SAM@example.org", date_of_birth="1975-06-30"),
        headers=headers,
    )
    assert same_email.status_code == 201, same_email.text
    same_id = await client.post(
        "/api/v1/patients",
        json=patient_body(identifiers=[{"type": "national_id", "system": "urn:x", "value": "nin 123"}]),
        headers=headers,
    )
    assert same_id.status_code == 409
    assert same_id.json()["candidates"][0]["reasons"] == ["same_national_id"]
    assert other["id"] not in {c["id"] for c in same_id.json()["candidates"]}
    assert await count(database_url, "patients") == 3
    # The disclosed candidates are in the PHI log even though the request failed.
    checks = await phi_rows(database_url, action="duplicate_check", patient_id=uuid.UUID(first["id"]))
    assert len(checks) == 2

    anyway = await client.post("/api/v1/patients?allow_duplicate=true", json=similar, headers=headers)
    assert anyway.status_code == 201
    overrides = await phi_rows(database_url, action="duplicate_override")
    assert [(str(r["patient_id"]), r["resource_id"]) for r in overrides] == [
        (first["id"], anyway.json()["id"])
    ]
    body_flag = await client.post(
        "/api/v1/patients", json={**similar, "allow_duplicate": True}, headers=headers
    )
    assert body_flag.status_code == 201


async def test_nickname_typo_swap_and_married_name_are_409_with_their_reason(client, settings) -> None:
    headers = auth_headers(settings, "receptionist")
    registered = await make_patient(
        client,
        settings,
        given_name="Margaret",
        family_name="Núñez",
        date_of_birth="1971-04-09",
        sex_at_birth="female",
        phone="+1 555 0142 987",
    )
    attempts = {
        "nickname": patient_body(given_name="Peggy", family_name="Nunez", date_of_birth="1971-04-09"),
        "name_typo": patient_body(given_name="Margaret", family_name="Nuñes", date_of_birth="1971-04-09"),
        "swapped_names": patient_body(given_name="Nunez", family_name="Margaret", date_of_birth="1971-04-09"),
        "birth_date_day_month_swapped": patient_body(
            given_name="Margaret", family_name="Núñez", date_of_birth="1971-09-04"
        ),
        "family_name_changed": patient_body(
            given_name="Margaret", family_name="Okonkwo", date_of_birth="1971-04-09", phone="555-0142-987"
        ),
    }
    for reason, body in attempts.items():
        response = await client.post("/api/v1/patients", json=body, headers=headers)
        assert response.status_code == 409, (reason, response.text)
        [candidate] = response.json()["candidates"]
        assert candidate["id"] == registered["id"]
        assert reason in candidate["reasons"], (reason, candidate)
        assert 0.5 <= candidate["score"] <= 1


async def test_same_given_name_and_birth_date_or_a_twin_is_a_new_patient(
    client, settings, database_url
) -> None:
    headers = auth_headers(settings, "receptionist")
    await make_patient(
        client,
        settings,
        given_name="Michael",
        family_name="Smith",
        date_of_birth="1980-01-01",
        sex_at_birth="male",
        phone="+44 20 7946 0001",
        address_line="1 Church Lane",
    )
    # The false positive an outside test reported: only the given name and birth date agree.
    stranger = patient_body(given_name="Michael", family_name="Okoro", date_of_birth="1980-01-01")
    created = await client.post("/api/v1/patients", json=stranger, headers=headers)
    assert created.status_code == 201, created.text
    # A twin: same family, birth date, phone and address, another given name.
    twin = patient_body(
        given_name="Daniel",
        family_name="Smith",
        date_of_birth="1980-01-01",
        sex_at_birth="male",
        phone="+44 20 7946 0001",
        address_line="1 Church Lane",
    )
    assert (await client.post("/api/v1/patients", json=twin, headers=headers)).status_code == 201
    assert await count(database_url, "patients") == 3
    assert await phi_rows(database_url, action="duplicate_override") == []


async def test_merge_moves_records_redirects_and_is_audited(client, settings, database_url) -> None:
    headers = auth_headers(settings, "receptionist")
    keep = await make_patient(client, settings, family_name="Keeper")
    dupe = await make_patient(client, settings, family_name="Keeperr")
    earlier = await make_patient(client, settings, family_name="Keepr")
    doctor = await make_practitioner(client, settings)
    booked = await client.post(
        "/api/v1/appointments",
        json={
            "patient_id": dupe["id"],
            "practitioner_id": doctor["id"],
            "starts_at": "2030-01-02T09:00:00Z",
            "ends_at": "2030-01-02T09:30:00Z",
        },
        headers=headers,
    )
    assert booked.status_code == 201, booked.text
    upload = await client.post(
        f"/api/v1/patients/{dupe['id']}/documents",
        files={"file": ("note.txt", b"referral letter", "text/plain")},
        headers=auth_headers(settings, "nurse"),
    )
    assert upload.status_code == 201, upload.text
    first_merge = await client.post(
        f"/api/v1/patients/{earlier['id']}/merge", json={"into": dupe["id"]}, headers=headers
    )
    assert first_merge.status_code == 200, first_merge.text

    # Nurses may not merge.
    denied = await client.post(
        f"/api/v1/patients/{dupe['id']}/merge",
        json={"into": keep["id"]},
        headers=auth_headers(settings, "nurse"),
    )
    assert denied.status_code == 403

    merged = await client.post(
        f"/api/v1/patients/{dupe['id']}/merge", json={"into": keep["id"]}, headers=headers
    )
    assert merged.status_code == 200, merged.text
    result = merged.json()
    assert result["survivor"]["id"] == keep["id"]
    assert result["moved"]["scheduling.appointments"] == 1
    assert result["moved"]["documents"] == 1
    assert result["moved"]["patients.earlier_merges"] == 1

    redirect = await client.get(f"/api/v1/patients/{dupe['id']}", headers=headers)
    assert redirect.status_code == 308
    assert redirect.headers["Location"] == f"/api/v1/patients/{keep['id']}"
    assert redirect.json()["merged_into"] == keep["id"]
    chained = await client.get(f"/api/v1/patients/{earlier['id']}", headers=headers)
    assert chained.headers["Location"] == f"/api/v1/patients/{keep['id']}"

    appointments = await client.get(
        "/api/v1/appointments", params={"patient_id": keep["id"]}, headers=headers
    )
    assert [a["id"] for a in appointments.json()["items"]] == [booked.json()["id"]]
    documents = await client.get(
        f"/api/v1/patients/{keep['id']}/documents", headers=auth_headers(settings, "nurse")
    )
    assert [d["id"] for d in documents.json()] == [upload.json()["id"]]

    search = await client.get("/api/v1/patients", params={"family": "keep"}, headers=headers)
    assert [p["id"] for p in search.json()["items"]] == [keep["id"]]
    merge_rows = await phi_rows(database_url, action="merge")
    assert {str(r["patient_id"]) for r in merge_rows} == {keep["id"], dupe["id"], earlier["id"]}

    again = await client.post(
        f"/api/v1/patients/{dupe['id']}/merge", json={"into": keep["id"]}, headers=headers
    )
    assert again.status_code == 409
    assert again.json()["code"] == "patient_merged"
    into_merged = await client.post(
        f"/api/v1/patients/{keep['id']}/merge", json={"into": dupe["id"]}, headers=headers
    )
    assert into_merged.status_code == 422
    itself = await client.post(
        f"/api/v1/patients/{keep['id']}/merge", json={"into": keep["id"]}, headers=headers
    )
    assert itself.status_code == 422
    update_merged = await client.patch(
        f"/api/v1/patients/{dupe['id']}", json={"city": "X"}, headers={**headers, "If-Match": "*"}
    )
    assert update_merged.status_code == 409


def test_every_domain_holding_patient_records_moves_them_on_a_merge() -> None:
    names = {name for name, _ in composition.MERGE_MOVERS}
    assert {"scheduling.appointments", "consultations", "clinical", "documents"} <= names
