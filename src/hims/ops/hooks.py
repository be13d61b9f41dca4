"""Hooks domains add to operational commands (core cannot import domains; ops collects them)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

#: Run after `hims db migrate` with the database URL; returns a line to print or None.
AFTER_MIGRATE: list[tuple[str, Callable[[str], Coroutine[Any, Any, str | None]]]] = []
