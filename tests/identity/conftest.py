from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from httpx import AsyncClient
from pydantic import SecretStr

from tests.conftest import make_settings, serve_in_process


@dataclass
class Mailbox:
    """Messages a real SMTP server (aiosmtpd) received."""

    port: int
    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    """A real SMTP server on a free local port."""
    box = Mailbox(port=_free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
async def mail_client(
    database_url: str, redis_url: str, tmp_path: Any, smtp_server: Mailbox
) -> AsyncIterator[AsyncClient]:
    """A client for an app that sends mail to ``smtp_server``."""
    settings = make_settings(
        database_url,
        redis_url,
        hims_data_dir=tmp_path,
        smtp_host="127.0.0.1",
        smtp_port=smtp_server.port,
        smtp_from="hims@example.org",
        public_url="https://hims.example.org",
    )
    async with serve_in_process(settings) as http:
        yield http


def client_for(database_url: str, redis_url: str, tmp_path: Any, **overrides: Any) -> Any:
    """An app+client context with extra settings (production mode, other lockout numbers...).

    Production refuses to start with the development JWT secret, so those runs get a real one.
    """
    if overrides.get("hims_env") in ("production", "staging"):
        overrides.setdefault("jwt_secret", SecretStr(secrets.token_urlsafe(48)))
    return serve_in_process(make_settings(database_url, redis_url, hims_data_dir=tmp_path, **overrides))
