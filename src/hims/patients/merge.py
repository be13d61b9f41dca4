"""The patient-merge hook registry.

Every domain that stores rows pointing at a patient registers one async function that moves
them from the merged patient to the survivor, inside the merge's transaction::

    from hims.patients.merge import register_merge_hook

    async def move_consultations(session, from_id, into_id) -> int:
        ...  # UPDATE consultations SET patient_id = into_id WHERE patient_id = from_id
        return moved

    register_merge_hook(move_consultations)      # or MERGE_HOOKS.append(move_consultations)

Register at import of the domain package (its ``__init__``), which ``hims.models`` imports.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

#: ``(session, from_id, into_id) -> rows moved``; runs in the merge's transaction, must not commit.
MergeHook = Callable[[AsyncSession, uuid.UUID, uuid.UUID], Awaitable[int]]

#: Every registered hook, run in registration order by `hims.patients.service.merge_patients`.
MERGE_HOOKS: list[MergeHook] = []


def register_merge_hook(hook: MergeHook) -> MergeHook:
    """Add ``hook`` once (re-imports do not register twice); usable as a decorator."""
    if hook not in MERGE_HOOKS:
        MERGE_HOOKS.append(hook)
    return hook


def hook_name(hook: MergeHook) -> str:
    """A stable label for reports: ``module.function``."""
    return f"{getattr(hook, '__module__', '?')}.{getattr(hook, '__qualname__', repr(hook))}"
