from __future__ import annotations

from httpx import AsyncClient

from tests.support import count_rows


async def _order(client, headers, patient_id, code="2345-7"):
    response = await client.post(
        f"/api/v1/patients/{patient_id}/lab-orders",
        json={"code": code, "display": "Glucose"},
        headers=headers,
    )
    return response


async def test_order_collect_result_with_abnormal_flag(client: AsyncClient, physician, patient_id):
    order = (await _order(client, physician, patient_id)).json()
    assert order["status"] == "ordered"
    base = f"/api/v1/patients/{patient_id}/lab-orders/{order['id']}"
    collected = await client.post(f"{base}/collect", headers=physician)
    assert collected.json()["status"] == "collected"
    resulted = await client.post(
        f"{base}/result",
        json={"value": 182, "unit": "mg/dL", "reference_low": 70, "reference_high": 99},
        headers=physician,
    )
    assert resulted.status_code == 200, resulted.text
    body = resulted.json()
    assert (body["status"], body["abnormal_flag"], body["result_unit"]) == ("resulted", "H", "mg/dL")
    assert (await client.post(f"{base}/cancel", headers=physician)).status_code == 409
    listed = await client.get(f"/api/v1/patients/{patient_id}/lab-orders", headers=physician)
    assert [o["id"] for o in listed.json()] == [order["id"]]


async def test_low_normal_and_no_range(client: AsyncClient, physician, patient_id):
    flags = []
    for value, low, high in ((50, 70, 99), (80, 70, 99), (80, None, None)):
        order = (await _order(client, physician, patient_id)).json()
        resulted = await client.post(
            f"/api/v1/patients/{patient_id}/lab-orders/{order['id']}/result",
            json={"value": value, "unit": "mg/dL", "reference_low": low, "reference_high": high},
            headers=physician,
        )
        flags.append(resulted.json()["abnormal_flag"])
    assert flags == ["L", "N", None]


async def test_bad_loinc_is_422(client: AsyncClient, physician, patient_id, database_url):
    response = await _order(client, physician, patient_id, code="2345-8")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "code"
    assert await count_rows(database_url, "lab_orders") == 0


async def test_cancel_then_result_is_refused(client: AsyncClient, physician, patient_id):
    order = (await _order(client, physician, patient_id)).json()
    base = f"/api/v1/patients/{patient_id}/lab-orders/{order['id']}"
    assert (await client.post(f"{base}/cancel", headers=physician)).json()["status"] == "cancelled"
    late = await client.post(f"{base}/result", json={"value": 1, "unit": "mg/dL"}, headers=physician)
    assert late.status_code == 409
