"""Vital signs: LOINC codes, UCUM units, possible ranges and reference ranges in one table.

Values outside ``possible`` are physiologically impossible (a typo or a wrong unit) and are
refused; values outside ``normal`` are flagged L/H, outside ``critical`` LL/HH. Adult ranges.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal


@dataclass(frozen=True)
class VitalSign:
    """One vital sign kind and its ranges (None = no bound)."""

    field: str
    loinc: str
    display: str
    unit: str
    possible: tuple[Decimal, Decimal]
    normal: tuple[Decimal | None, Decimal | None] = (None, None)
    critical: tuple[Decimal | None, Decimal | None] = (None, None)


def _d(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _vital(
    field: str,
    loinc: str,
    display: str,
    unit: str,
    possible: tuple[str, str],
    normal: tuple[str | None, str | None] = (None, None),
    critical: tuple[str | None, str | None] = (None, None),
) -> VitalSign:
    return VitalSign(
        field,
        loinc,
        display,
        unit,
        (Decimal(possible[0]), Decimal(possible[1])),
        (_d(normal[0]), _d(normal[1])),
        (_d(critical[0]), _d(critical[1])),
    )


#: The reference table: field name in the API → code, unit, impossible bounds, reference ranges.
VITAL_SIGNS: dict[str, VitalSign] = {
    v.field: v
    for v in (
        _vital(
            "systolic_bp",
            "8480-6",
            "Systolic blood pressure",
            "mm[Hg]",
            ("40", "300"),
            ("90", "139"),
            ("70", "179"),
        ),
        _vital(
            "diastolic_bp",
            "8462-4",
            "Diastolic blood pressure",
            "mm[Hg]",
            ("20", "200"),
            ("60", "89"),
            ("40", "119"),
        ),
        _vital("heart_rate", "8867-4", "Heart rate", "/min", ("20", "300"), ("60", "100"), ("40", "130")),
        _vital(
            "body_temperature",
            "8310-5",
            "Body temperature",
            "Cel",
            ("25", "45"),
            ("36.0", "37.9"),
            ("35.0", "39.9"),
        ),
        _vital(
            "spo2",
            "59408-5",
            "Oxygen saturation in Arterial blood by Pulse oximetry",
            "%",
            ("40", "100"),
            ("95", None),
            ("90", None),
        ),
        _vital(
            "respiratory_rate", "9279-1", "Respiratory rate", "/min", ("4", "80"), ("12", "20"), ("8", "30")
        ),
        _vital("body_weight", "29463-7", "Body weight", "kg", ("0.3", "650")),
        _vital("body_height", "8302-2", "Body height", "cm", ("20", "275")),
        _vital(
            "bmi",
            "39156-5",
            "Body mass index (BMI) [Ratio]",
            "kg/m2",
            ("5", "200"),
            ("18.5", "24.9"),
            ("16.0", "39.9"),
        ),
    )
}
#: Fields a client may send (BMI is derived, never sent).
INPUT_FIELDS = tuple(f for f in VITAL_SIGNS if f != "bmi")
BY_CODE = {v.loinc: v for v in VITAL_SIGNS.values()}


def interpret(vital: VitalSign, value: Decimal) -> str | None:
    """HL7 interpretation: LL/L/N/H/HH, or None when the sign has no reference range."""
    (low, high), (crit_low, crit_high) = vital.normal, vital.critical
    if low is None and high is None:
        return None
    if crit_low is not None and value < crit_low:
        return "LL"
    if crit_high is not None and value > crit_high:
        return "HH"
    if low is not None and value < low:
        return "L"
    if high is not None and value > high:
        return "H"
    return "N"


def is_possible(vital: VitalSign, value: Decimal) -> bool:
    """False for physiologically impossible values."""
    low, high = vital.possible
    return low <= value <= high


def bmi(weight_kg: Decimal, height_cm: Decimal) -> Decimal:
    """Body mass index in kg/m2, one decimal."""
    metres = height_cm / Decimal(100)
    return (weight_kg / (metres * metres)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
