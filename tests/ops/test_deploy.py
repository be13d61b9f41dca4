"""The deployment artefacts refer to things the app really has."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from httpx import AsyncClient

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# Prometheus itself produces `up`; every other series an alert reads must come from /metrics.
PROMETHEUS_OWN = {"up"}


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b([a-z_][a-z0-9_]*)\s*(?=[{\[])", expr)) - PROMETHEUS_OWN


async def test_every_alert_reads_metrics_the_app_exports(client: AsyncClient) -> None:
    # Produce at least one observation so histogram and counter series exist.
    assert (await client.get("/health")).status_code == 200
    exposition = (await client.get("/metrics")).text
    # Requests are labelled by route template, and an unknown path never becomes a label.
    assert (await client.get("/no/such/Okafor")).status_code == 404
    exposition = (await client.get("/metrics")).text
    assert 'route="/health"' in exposition
    assert "Okafor" not in exposition
    exported = set(re.findall(r"^([a-z_][a-z0-9_]*)(?:\{| )", exposition, flags=re.MULTILINE))
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {a["alert"] for a in alerts} >= {
        "APIDown",
        "HighErrorRate",
        "SlowResponseTime",
        "HighDBConnections",
    }
    for alert in alerts:
        missing = _metric_names(alert["expr"]) - exported
        assert not missing, f"{alert['alert']} reads metrics /metrics does not export: {missing}"
        assert alert["labels"]["severity"] in {"critical", "high", "medium", "low"}


def test_kubernetes_probes_point_at_real_health_routes() -> None:
    from hims.app import create_app
    from hims.core.routes import iter_routes
    from tests.conftest import make_settings

    app = create_app(make_settings("postgresql://x@127.0.0.1/x", None))
    paths = {r.path for r in iter_routes(app)}
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "api.yaml").read_text()))
    container = docs[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] in paths
    assert container["livenessProbe"]["httpGet"]["path"] in paths


def test_kubernetes_worker_shares_the_export_files_volume_with_the_api() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "api.yaml").read_text()))
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    claims = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PersistentVolumeClaim"}

    def files_claim(name: str) -> str:
        pod = deployments[name]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/app/var/files")
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        return str(volume["persistentVolumeClaim"]["claimName"])

    worker = deployments["hims-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert worker["args"] == ["hims", "worker"]
    assert files_claim("hims-api") == files_claim("hims-worker")
    assert claims[files_claim("hims-api")]["spec"]["accessModes"] == ["ReadWriteMany"]
