"""Code systems: ICD-10-CM (through `simple-icd-10-cm`) and the LOINC check digit."""

from __future__ import annotations

import re
import warnings
from functools import cache
from types import ModuleType

from hims.patients.mrn import luhn_check_digit

_LOINC = re.compile(r"^(\d{1,7})-(\d)$")


@cache
def _icd() -> ModuleType:
    # Loaded on first use (parsing the code set takes about a second). The package still calls
    # importlib.resources.read_text, deprecated in Python 3.11: silence that warning only.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10_cm

        module: ModuleType = simple_icd_10_cm
        return module


def icd10cm_lookup(code: str) -> tuple[str, str] | None:
    """(canonical code with dot, description) for a valid ICD-10-CM category/subcategory, else None."""
    icd = _icd()
    candidate = code.strip().upper()
    if not candidate or not icd.is_valid_item(candidate) or icd.is_chapter_or_block(candidate):
        return None
    canonical = str(icd.add_dot(candidate))
    return canonical, str(icd.get_description(canonical))


def warm_up() -> None:
    """Load the ICD-10-CM data now (e.g. at start-up) instead of on the first request."""
    _icd()


def loinc_is_valid(code: str) -> bool:
    """True for a LOINC code whose check digit (mod 10, Luhn) is right, e.g. 8480-6."""
    match = _LOINC.match(code.strip())
    if not match:
        return False
    return luhn_check_digit(match.group(1)) == int(match.group(2))


def icd10cm_size() -> int:
    """How many codes (chapters, blocks and categories included) the ICD-10-CM set holds."""
    return len(_icd().get_all_codes())
