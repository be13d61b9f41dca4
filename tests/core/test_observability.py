from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from hims.app import create_app
from hims.core.observability import _scrub, installed
from hims.settings import Settings


def test_configured_but_missing_extras_say_so_once(settings: Settings, capfd: pytest.CaptureFixture[str]):
    # The dev install has neither extra, which is the case an operator must be told about.
    assert not installed("sentry_sdk")
    assert not installed("opentelemetry.instrumentation.fastapi")
    configured = settings.model_copy(
        update={"sentry_dsn": SecretStr("https://key@sentry.example/1"), "otel_enabled": True}
    )
    create_app(configured)
    records = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    events = {r["event"]: r for r in records}
    assert "[sentry]" in events["sentry_unavailable"]["detail"]
    assert "[otel]" in events["otel_unavailable"]["detail"]
    assert "key@sentry" not in json.dumps(records)


def test_nothing_is_logged_when_not_configured(settings: Settings, capfd: pytest.CaptureFixture[str]):
    create_app(settings)
    assert "unavailable" not in capfd.readouterr().err


def test_sentry_events_lose_anything_that_may_hold_phi():
    event = {
        "request": {
            "url": "https://h/api/v1/patients?name=Okafor",
            "query_string": "name=Okafor",
            "data": {},
        },
        "exception": {
            "values": [
                {
                    "type": "ValueError",
                    "value": "cannot find Okafor",
                    "stacktrace": {"frames": [{"function": "search", "vars": {"name": "Okafor"}}]},
                }
            ]
        },
        "breadcrumbs": {"values": [{"message": "GET /patients?name=Okafor"}]},
    }
    assert "Okafor" not in json.dumps(_scrub(event, None))


def test_trace_spans_lose_raw_paths_and_queries():
    from hims.core.observability import _redact_span_url

    class Span:
        def __init__(self) -> None:
            self.attributes = {"http.target": "/api/v1/patients/Okafor", "http.url": "http://h/p?name=Okafor"}

        def is_recording(self) -> bool:
            return True

        def set_attribute(self, key: str, value: str) -> None:
            self.attributes[key] = value

    span = Span()
    _redact_span_url(span, {})
    assert "Okafor" not in json.dumps(span.attributes)
