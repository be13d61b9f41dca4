"""Outgoing e-mail through the configured SMTP server (SMTP_*)."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage

import structlog

from hims.core.errors import ServiceUnavailable
from hims.settings import Settings

log = structlog.get_logger("hims.identity.mail")


def _send(settings: Settings, message: EmailMessage) -> None:
    assert settings.smtp_host is not None
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_user and settings.smtp_pass:
            smtp.login(settings.smtp_user, settings.smtp_pass.get_secret_value())
        smtp.send_message(message)


async def send_mail(settings: Settings, *, to: str, subject: str, body: str) -> None:
    """Send a plain-text message; ServiceUnavailable when SMTP is unset or refuses."""
    if not settings.smtp_host:
        raise ServiceUnavailable("E-mail is not configured (SMTP_HOST).", code="smtp_not_configured")
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    try:
        await asyncio.to_thread(_send, settings, message)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("smtp_failed", error=type(exc).__name__)
        raise ServiceUnavailable("The mail server did not accept the message.", code="smtp_failed") from None
