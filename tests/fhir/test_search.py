"""Search: parameter types, modifiers, prefixes, chains, paging, sort, include, elements, warnings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from httpx import AsyncClient

from tests.fhir.conftest import create, patient

#: Distinct given names for patients made in a loop (the same person twice is a duplicate).
GIVEN = ("Ama", "Kwesi", "Yaa", "Esi", "Kwame", "Abena", "Fiifi")


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == mode]


async def _people(fhir: AsyncClient) -> dict[str, str]:
    made = {}
    for family, given, birth, city in [
        ("Müller", "Anna", "1970-01-15", "Berlin"),
        ("Mullins", "Bob", "1985-06-30", "Dublin"),
        ("Smith", "Carol", "1985-07-01", "Boston"),
        ("Okafor", "Dede", "2001", "Lagos"),
    ]:
        body = patient(
            name=[{"family": family, "given": [given]}],
            birthDate=birth,
            address=[{"city": city, "line": [f"{given} street"]}],
            identifier=[{"system": "urn:mrn", "value": given}],
        )
        made[given] = (await create(fhir, body))["id"]
    return made


async def test_string_search_prefix_exact_contains(fhir: AsyncClient) -> None:
    p = await _people(fhir)
    assert set(ids((await fhir.get("/Patient", params={"name": "mul"})).json())) == {p["Anna"], p["Bob"]}
    assert ids((await fhir.get("/Patient", params={"name:exact": "Müller"})).json()) == [p["Anna"]]
    assert ids((await fhir.get("/Patient", params={"name:exact": "müller"})).json()) == []
    assert ids((await fhir.get("/Patient", params={"name:contains": "LLIN"})).json()) == [p["Bob"]]
    assert ids((await fhir.get("/Patient", params={"address": "dub"})).json()) == [p["Bob"]]
    assert ids((await fhir.get("/Patient", params={"address:contains": "agO"})).json()) == [p["Dede"]]
    assert ids((await fhir.get("/Patient", params={"family": "smith,okafor", "_sort": "family"})).json()) == [
        p["Dede"],
        p["Carol"],
    ]


async def test_birthdate_prefixes(fhir: AsyncClient) -> None:
    p = await _people(fhir)

    async def born(value: str) -> set[str]:
        return set(ids((await fhir.get("/Patient", params={"birthdate": value, "_count": "50"})).json()))

    assert await born("1985") == {p["Bob"], p["Carol"]}
    assert await born("eq1985-06") == {p["Bob"]}
    assert await born("ne1985") == {p["Anna"], p["Dede"]}
    assert await born("lt1985-06-30") == {p["Anna"]}
    assert await born("le1985-06-30") == {p["Anna"], p["Bob"]}
    assert await born("gt1985-07-01") == {p["Dede"]}
    assert await born("ge1985-07-01") == {p["Carol"], p["Dede"]}
    assert await born("sa1985") == {p["Dede"]}
    assert await born("eb1985") == {p["Anna"]}
    assert p["Carol"] in await born("ap1985-07-02")
    bad = await fhir.get("/Patient", params={"birthdate": "19x5"})
    assert bad.status_code == 400
    assert bad.json()["issue"][0]["details"]["coding"][0]["code"] == "invalid_date"


async def test_token_reference_chain_quantity_include(fhir: AsyncClient, partitions: str) -> None:
    p = await _people(fhir)
    assert ids((await fhir.get("/Patient", params={"identifier": "urn:mrn|Bob"})).json()) == [p["Bob"]]
    assert ids((await fhir.get("/Patient", params={"identifier": "Bob"})).json()) == [p["Bob"]]
    assert ids((await fhir.get("/Patient", params={"identifier": "|Bob"})).json()) == []
    practitioner = await create(
        fhir, {"resourceType": "Practitioner", "name": [{"family": "House", "given": ["Gregory"]}]}
    )
    encounter = await create(
        fhir,
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{p['Bob']}"},
            "period": {"start": "2024-03-01T10:00:00Z", "end": "2024-03-01T11:00:00Z"},
        },
    )
    obs = await create(
        fhir,
        {
            "resourceType": "Observation",
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "vital-signs",
                        }
                    ]
                }
            ],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{p['Bob']}"},
            "encounter": {"reference": f"Encounter/{encounter['id']}"},
            "effectiveDateTime": "2024-03-01T10:30:00Z",
            "valueQuantity": {
                "value": 72.5,
                "unit": "/min",
                "system": "http://unitsofmeasure.org",
                "code": "/min",
            },
        },
    )
    med = await create(
        fhir,
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {"text": "aspirin"},
            "subject": {"reference": f"Patient/{p['Bob']}"},
            "requester": {"reference": f"Practitioner/{practitioner['id']}"},
        },
    )

    async def find(rtype: str, **params: str) -> list[str]:
        response = await fhir.get(f"/{rtype}", params=params)
        assert response.status_code == 200, response.text
        return ids(response.json())

    assert await find("Observation", category="vital-signs") == [obs["id"]]
    assert await find("Observation", code="http://loinc.org|8867-4") == [obs["id"]]
    assert await find("Observation", subject=f"Patient/{p['Bob']}") == [obs["id"]]
    assert await find("Observation", patient=p["Bob"]) == [obs["id"]]
    assert await find("Observation", patient=p["Anna"]) == []
    assert await find("Observation", **{"subject:Patient.name": "mullins"}) == [obs["id"]]
    assert await find("Observation", **{"subject:Patient.name": "smith"}) == []
    assert await find("Observation", **{"value-quantity": "gt72"}) == [obs["id"]]
    assert await find("Observation", **{"value-quantity": "72.5|http://unitsofmeasure.org|/min"}) == [
        obs["id"]
    ]
    assert await find("Observation", **{"value-quantity": "lt72"}) == []
    assert await find("Observation", date="2024-03-01") == [obs["id"]]
    assert await find("Observation", date="gt2024-03-02") == []
    assert await find("Encounter", date="2024-03") == [encounter["id"]]
    assert await find("Encounter", date="ge2024-03-01T10:30:00Z") == [encounter["id"]]
    assert await find("Encounter", status="finished", **{"class": "AMB"}) == [encounter["id"]]
    assert await find("Observation", **{"category:missing": "false"}) == [obs["id"]]
    assert await find("MedicationRequest", **{"category:missing": "true"}) == [med["id"]]

    inc = (await fhir.get("/Encounter", params={"_include": "Encounter:patient"})).json()
    assert ids(inc, "include") == [p["Bob"]]
    inc = (await fhir.get("/Observation", params={"_include": "Observation:encounter"})).json()
    assert ids(inc, "include") == [encounter["id"]]
    inc = (await fhir.get("/MedicationRequest", params={"_include": "MedicationRequest:requester"})).json()
    assert ids(inc, "include") == [practitioner["id"]]
    rev = (await fhir.get("/Encounter", params={"_revinclude": "Observation:encounter"})).json()
    assert ids(rev, "include") == [obs["id"]]

    elements = (await fhir.get("/Observation", params={"_elements": "status"})).json()["entry"][0]["resource"]
    assert set(elements) == {"resourceType", "id", "meta", "status"}
    count = (await fhir.get("/Patient", params={"_summary": "count"})).json()
    assert count["total"] == 4
    assert "entry" not in count or count["entry"] == []


async def test_has_deep_chains_iterate_includes_and_multi_key_sort(
    fhir: AsyncClient, partitions: str
) -> None:
    p = await _people(fhir)
    org = await create(fhir, {"resourceType": "Organization", "name": "St Elsewhere"})
    for who in ("Anna", "Bob"):
        person = (await fhir.get(f"/Patient/{p[who]}")).json()
        person["managingOrganization"] = {"reference": f"Organization/{org['id']}"}
        assert (await fhir.put(f"/Patient/{p[who]}", json=person)).status_code == 200
    encounter = await create(
        fhir,
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": {"reference": f"Patient/{p['Bob']}"},
            "period": {"start": "2024-03-01T10:00:00Z"},
        },
    )
    heart_rate = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{p['Bob']}"},
        "encounter": {"reference": f"Encounter/{encounter['id']}"},
    }
    obs = await create(fhir, heart_rate)

    async def find(rtype: str, params: dict[str, str], mode: str = "match") -> list[str]:
        response = await fhir.get(f"/{rtype}", params=params)
        assert response.status_code == 200, response.text
        return ids(response.json(), mode)

    # _has: the patients some Observation with that code points at (and nested: via an Encounter).
    assert await find("Patient", {"_has:Observation:patient:code": "8867-4"}) == [p["Bob"]]
    assert await find("Patient", {"_has:Observation:patient:code": "0000-0"}) == []
    assert await find("Patient", {"_has:Encounter:patient:_has:Observation:encounter:code": "8867-4"}) == [
        p["Bob"]
    ]
    bad = await fhir.get("/Patient", params={"_has:Observation:status:code": "x"})
    assert bad.status_code == 400
    assert bad.json()["issue"][0]["details"]["coding"][0]["code"] == "invalid_has"
    # Two-level chain: Observations of patients managed by an organization named so.
    chain = {"subject:Patient.organization.name": "st elsewhere"}
    assert await find("Observation", chain) == [obs["id"]]
    assert await find("Observation", {"subject:Patient.organization.name": "nowhere"}) == []
    # _include:iterate follows the included Encounter on to its Patient.
    iterate = {"_include": "Observation:encounter", "_include:iterate": "Encounter:subject"}
    assert sorted(await find("Observation", iterate, "include")) == sorted([encounter["id"], p["Bob"]])
    assert await find("Observation", {"_include": "Observation:encounter"}, "include") == [encounter["id"]]
    # Sort on two keys, paged one by one: city descending, then family ascending.
    for who, city in (("Carol", "Berlin"),):
        person = (await fhir.get(f"/Patient/{p[who]}")).json()
        person["address"] = [{"city": city}]
        assert (await fhir.put(f"/Patient/{p[who]}", json=person)).status_code == 200
    seen: list[str] = []
    url: str | None = "/Patient?_sort=-address-city,family&_count=1"
    while url:
        page = (await fhir.get(url)).json()
        seen.extend(ids(page))
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        if url:
            url = url.split("/fhir/R4", 1)[1]
    assert seen == [p["Dede"], p["Bob"], p["Anna"], p["Carol"]]


async def test_paging_is_stable_under_concurrent_writes(fhir: AsyncClient) -> None:
    made = [(await create(fhir, patient(family=f"Page{i:02d}", given=GIVEN[i])))["id"] for i in range(7)]
    seen: list[str] = []
    response = (await fhir.get("/Patient", params={"_count": "3"})).json()
    first = True
    while True:
        seen.extend(ids(response))
        if first:
            # A write between pages neither duplicates nor skips anything already there.
            await create(fhir, patient(family="Late", given="Kojo"))
            await fhir.put(
                f"/Patient/{made[5]}", json={**patient(family="Moved", given=GIVEN[5]), "id": made[5]}
            )
            first = False
        nxt = [link["url"] for link in response["link"] if link["relation"] == "next"]
        if not nxt:
            break
        response = (await fhir.get(nxt[0].split("/fhir/R4", 1)[1])).json()
    assert seen[:7] == made
    assert len(seen) == len(set(seen)) == 8


async def test_unknown_parameter_warns_or_fails_strict(fhir: AsyncClient) -> None:
    await create(fhir, patient())
    lenient = (await fhir.get("/Patient", params={"shoe-size": "42"})).json()
    outcomes = [e for e in lenient["entry"] if e["search"]["mode"] == "outcome"]
    assert outcomes[0]["resource"]["issue"][0]["severity"] == "warning"
    assert len(ids(lenient)) == 1
    strict = await fhir.get("/Patient", params={"shoe-size": "42"}, headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert strict.json()["resourceType"] == "OperationOutcome"


async def test_id_last_updated_post_search_and_histories(fhir: AsyncClient) -> None:
    a = await create(fhir, patient(family="First", given="Ama"))
    b = await create(fhir, patient(family="Second", given="Kofi"))
    assert set(ids((await fhir.get("/Patient", params={"_id": f"{a['id']},{b['id']}"})).json())) == {
        a["id"],
        b["id"],
    }
    stamp = b["meta"]["lastUpdated"]
    assert ids((await fhir.get("/Patient", params={"_lastUpdated": f"ge{stamp}"})).json()) == [b["id"]]
    assert ids((await fhir.get("/Patient", params={"_sort": "-_lastUpdated"})).json()) == [b["id"], a["id"]]
    posted = await fhir.post(
        "/Patient/_search",
        data={"family": "sec"},
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert ids(posted.json()) == [b["id"]]
    type_history = (await fhir.get("/Patient/_history")).json()
    assert type_history["type"] == "history"
    assert len(type_history["entry"]) == 2
    system_history = (await fhir.get("/_history", params={"_count": "1"})).json()
    assert len(system_history["entry"]) == 1
    assert any(link["relation"] == "next" for link in system_history["link"])


async def test_malformed_cursors_and_odd_values_are_400_not_500(fhir: AsyncClient) -> None:
    await create(fhir, patient())
    for url in (
        "/Patient?_cursor=bm9wZQ",
        "/Patient?_cursor=WyJ4Il0",
        "/Patient?_sort=family&_cursor=WzFd",
        "/_history?_cursor=WyJ4IiwxLDJd",
        "/Patient?_count=abc",
        "/Patient?_sort=shoe",
    ):
        response = await fhir.get(url)
        assert response.status_code == 400, (url, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
    odd = await fhir.get("/Patient", params={"name": "a\U0010ffff"})
    assert odd.status_code == 200


async def test_canonical_url_searches_with_below_and_above(fhir: AsyncClient) -> None:
    examples = Path(__file__).parents[1] / "data" / "fhir" / "examples"
    made = {}
    for name in ("3141", "gcs", "zika-virus-exposure-assessment"):
        body = json.loads((examples / f"Questionnaire-{name}.json").read_text())
        body.pop("id")
        made[name] = (await create(fhir, body))["id"]

    async def found(params: dict[str, str]) -> set[str]:
        response = await fhir.get("/Questionnaire", params=params)
        assert response.status_code == 200, response.text
        return set(ids(response.json()))

    assert await found({"url": "http://hl7.org/fhir/Questionnaire/gcs"}) == {made["gcs"]}
    assert await found({"url": "http://hl7.org/fhir/Questionnaire/gc"}) == set()  # whole URIs only
    assert await found({"url:below": "http://hl7.org/fhir/"}) == {made["3141"], made["gcs"]}
    above = "http://example.org/Questionnaire/zika-virus-exposure-assessment/extra"
    assert await found({"url:above": above}) == {made["zika-virus-exposure-assessment"]}
    assert await found({"name": "examplezika"}) == {made["zika-virus-exposure-assessment"]}
    assert await found({"url:missing": "true"}) == set()
    bad = await fhir.get("/Questionnaire", params={"url:contains": "gcs"})
    assert bad.status_code == 400
    assert bad.json()["issue"][0]["details"]["coding"][0]["code"] == "unsupported_modifier"


CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"


async def test_meta_tag_profile_and_security_on_every_type(fhir: AsyncClient) -> None:
    vital = {"profile": ["http://hl7.org/fhir/StructureDefinition/vitalsigns"]}
    tagged = await create(
        fhir,
        patient(
            meta={
                "tag": [{"system": "https://smarthealthit.org/tags", "code": "synthea-5-2019"}],
                "security": [{"system": CONFIDENTIALITY, "code": "R"}],
            }
        ),
    )
    plain = await create(fhir, patient(family="Plain", given="Kofi"))
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "heart rate"},
        "subject": {"reference": f"Patient/{plain['id']}"},
    }
    profiled = await create(fhir, {**observation, "meta": vital})
    await create(fhir, observation)

    async def found(resource_type: str, params: dict[str, str]) -> list[str]:
        response = await fhir.get(f"/{resource_type}", params=params)
        assert response.status_code == 200, response.text
        return ids(response.json())

    assert await found("Patient", {"_tag": "https://smarthealthit.org/tags|synthea-5-2019"}) == [tagged["id"]]
    assert await found("Patient", {"_security": "R"}) == [tagged["id"]]
    assert await found("Patient", {"_tag:missing": "true"}) == [plain["id"]]
    assert await found("Observation", {"_profile": vital["profile"][0]}) == [profiled["id"]]
    # :below finds the profiles under a base URL.
    assert await found("Observation", {"_profile:below": "http://hl7.org/fhir/"}) == [profiled["id"]]


async def test_number_search_prefixes_and_precision(fhir: AsyncClient) -> None:
    subject = await create(fhir, patient())
    made = {}
    for probability in (0.02, 0.4, 0.85):
        body = {
            "resourceType": "RiskAssessment",
            "status": "final",
            "subject": {"reference": f"Patient/{subject['id']}"},
            "prediction": [{"probabilityDecimal": probability}],
        }
        made[probability] = (await create(fhir, body))["id"]
    ranged = {
        "resourceType": "RiskAssessment",
        "status": "final",
        "subject": {"reference": f"Patient/{subject['id']}"},
        "prediction": [{"probabilityRange": {"low": {"value": 0.1}, "high": {"value": 0.2}}}],
    }
    await create(fhir, ranged)  # a Range is not a number: never matched

    async def found(value: str) -> set[str]:
        response = await fhir.get("/RiskAssessment", params={"probability": value})
        assert response.status_code == 200, response.text
        return set(ids(response.json()))

    assert await found("0.4") == {made[0.4]}
    assert await found("0.8") == set()  # 0.8 means [0.75, 0.85)
    assert await found("0.9") == {made[0.85]}  # [0.85, 0.95)
    assert await found("gt0.3") == {made[0.4], made[0.85]}
    assert await found("le0.4") == {made[0.02], made[0.4]}
    assert await found("ne0.4") == {made[0.02], made[0.85]}
    assert await found("ap0.8") == {made[0.85]}  # within 10 %
    for bad in ("abc", "gt", "1|x", "NaN"):
        response = await fhir.get("/RiskAssessment", params={"probability": bad})
        assert response.status_code == 400, bad
        assert response.json()["issue"][0]["details"]["coding"][0]["code"] == "invalid_number"


async def test_capability_statement_lists_uri_number_and_meta_parameters(fhir: AsyncClient) -> None:
    statement = (await fhir.get("/metadata")).json()
    resources = statement["rest"][0]["resource"]
    by_type = {r["type"]: {p["name"]: p["type"] for p in r["searchParam"]} for r in resources}
    assert by_type["ValueSet"]["url"] == "uri"
    assert by_type["ValueSet"]["version"] == "token"
    assert by_type["RiskAssessment"]["probability"] == "number"
    assert by_type["Patient"]["_profile"] == "uri"
    assert by_type["Observation"]["_tag"] == "token"
    assert "_tag" not in by_type["AuditEvent"]
