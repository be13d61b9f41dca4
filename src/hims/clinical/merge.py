"""Registers the clinical records' patient-merge hook (imported by the package)."""

from __future__ import annotations

from hims.clinical.service import repoint_patient
from hims.patients.merge import register_merge_hook

register_merge_hook(repoint_patient)
