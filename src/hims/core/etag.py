"""Weak ETags over a row's version column, and the If-Match precondition (optimistic concurrency)."""

from __future__ import annotations

import re

from hims.core.errors import HimsError, PreconditionFailed


class PreconditionRequired(HimsError):
    """428: the request must say which version it read (If-Match)."""

    status, code, title = 428, "precondition_required", "Precondition required"


_TAG = re.compile(r'^\s*(?:W/)?"(\d+)"\s*$')


def etag(version: int) -> str:
    """The ETag header value for ``version``: ``W/"3"``."""
    return f'W/"{version}"'


def if_match_version(header: str | None, *, required: bool) -> int | None:
    """The version an ``If-Match`` header names; None for ``*`` or (when optional) no header.

    Raises PreconditionRequired when ``required`` and the header is absent, PreconditionFailed
    when it cannot name a version of ours.
    """
    if header is None or not header.strip():
        if required:
            raise PreconditionRequired(
                'Send the ETag you read as `If-Match: W/"<version>"` to change this record.'
            )
        return None
    if header.strip() == "*":
        return None
    match = _TAG.match(header.split(",")[0])
    if not match:
        raise PreconditionFailed("If-Match does not name a version of this record.", code="version_mismatch")
    return int(match.group(1))


def check_version(current: int, expected: int | None) -> None:
    """Raise 412 ``version_mismatch`` when the client read an older (or newer) version."""
    if expected is not None and expected != current:
        raise PreconditionFailed(
            f"The record changed since you read it (now version {current}); read it again.",
            code="version_mismatch",
            headers={"ETag": etag(current)},
            extra={"current_version": current},
        )
