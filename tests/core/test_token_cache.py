"""Verified access tokens are remembered, but their time claims are checked on every use."""

from __future__ import annotations

import time
import uuid

import pytest

from hims.core import security
from hims.core.errors import Unauthorized
from hims.settings import Settings


def test_a_remembered_token_still_expires(settings: Settings, monkeypatch: pytest.MonkeyPatch):
    token = security.encode_access_token(settings, user_id=uuid.uuid4(), username="u", roles=[])
    claims = security.decode_token(settings, token, expected_type="access")
    assert security.decode_token(settings, token, expected_type="access") == claims  # from the cache
    later = time.time() + settings.jwt_expires_in.total_seconds() + 10
    monkeypatch.setattr(security.time, "time", lambda: later)
    with pytest.raises(Unauthorized) as raised:
        security.decode_token(settings, token, expected_type="access")
    assert raised.value.code == "token_expired"


def test_a_remembered_token_is_checked_for_type_and_secret(settings: Settings):
    token = security.encode_access_token(settings, user_id=uuid.uuid4(), username="u", roles=[])
    security.decode_token(settings, token, expected_type="access")
    with pytest.raises(Unauthorized):
        security.decode_token(settings, token, expected_type="refresh")
    secret = type(settings.jwt_secret)("another-secret-" + "x" * 40)
    other = settings.model_copy(update={"jwt_secret": secret})
    with pytest.raises(Unauthorized):  # verified under one secret says nothing about another
        security.decode_token(other, token, expected_type="access")


def test_returned_claims_are_a_copy(settings: Settings):
    token = security.encode_access_token(settings, user_id=uuid.uuid4(), username="u", roles=[])
    security.decode_token(settings, token, expected_type="access")["sub"] = "tampered"
    assert security.decode_token(settings, token, expected_type="access")["sub"] != "tampered"
