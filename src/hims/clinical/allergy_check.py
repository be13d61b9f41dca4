"""Allergy conflict check at prescribing time: same substance, or the same drug class.

The class table is deliberately small and conservative (a safety net, not a drug database):
an allergy to a class or to any member conflicts with every member of that class.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: class → (names that mean the class itself, member drugs).
DRUG_CLASSES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "penicillin": (
        frozenset({"penicillin", "penicillins", "beta-lactam penicillins"}),
        frozenset(
            {
                "penicillin",
                "penicillin v",
                "penicillin g",
                "amoxicillin",
                "ampicillin",
                "piperacillin",
                "dicloxacillin",
                "nafcillin",
                "oxacillin",
                "flucloxacillin",
                "benzylpenicillin",
            }
        ),
    ),
    "sulfonamide": (
        frozenset({"sulfa", "sulfa drugs", "sulfonamide", "sulfonamides", "sulphonamides"}),
        frozenset({"sulfamethoxazole", "sulfadiazine", "sulfasalazine", "sulfisoxazole", "co-trimoxazole"}),
    ),
    "nsaid": (
        frozenset({"nsaid", "nsaids", "non-steroidal anti-inflammatory drugs", "anti-inflammatory"}),
        frozenset(
            {
                "ibuprofen",
                "naproxen",
                "diclofenac",
                "ketorolac",
                "indomethacin",
                "meloxicam",
                "celecoxib",
                "aspirin",
                "acetylsalicylic acid",
                "ketoprofen",
                "piroxicam",
            }
        ),
    ),
    "cephalosporin": (
        frozenset({"cephalosporin", "cephalosporins"}),
        frozenset({"cefalexin", "cephalexin", "cefuroxime", "ceftriaxone", "cefazolin", "cefdinir"}),
    ),
    "opioid": (
        frozenset({"opioid", "opioids", "opiates"}),
        frozenset({"morphine", "codeine", "oxycodone", "hydrocodone", "tramadol", "fentanyl"}),
    ),
}


@dataclass(frozen=True)
class AllergyFacts:
    """What the check needs from an active allergy."""

    id: str
    substance: str
    code: str | None
    severity: str
    reaction: str | None


@dataclass(frozen=True)
class AllergyConflict:
    """One active allergy the drug conflicts with, and why."""

    allergy_id: str
    substance: str
    severity: str
    reaction: str | None
    match: str


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def _contains(haystack: str, needle: str) -> bool:
    return re.search(rf"(?<![a-z]){re.escape(needle)}(?![a-z])", haystack) is not None


def _classes_of_substance(substance: str) -> set[str]:
    found = set()
    for name, (aliases, members) in DRUG_CLASSES.items():
        if substance in aliases or any(_contains(substance, m) for m in members):
            found.add(name)
    return found


def _classes_of_drug(drug: str) -> set[str]:
    return {name for name, (_, members) in DRUG_CLASSES.items() if any(_contains(drug, m) for m in members)}


def find_conflicts(
    drug_name: str, rxnorm_code: str | None, allergies: list[AllergyFacts]
) -> list[AllergyConflict]:
    """Active allergies that ``drug_name`` conflicts with (case-insensitive, class-aware)."""
    drug = _norm(drug_name)
    drug_classes = _classes_of_drug(drug)
    conflicts = []
    for allergy in allergies:
        substance = _norm(allergy.substance)
        match: str | None = None
        if rxnorm_code and allergy.code and rxnorm_code == allergy.code:
            match = "same RxNorm code"
        elif substance and (substance == drug or _contains(drug, substance)):
            match = "same substance"
        else:
            shared = sorted(drug_classes & _classes_of_substance(substance))
            if shared:
                match = f"drug class: {shared[0]}"
        if match:
            conflicts.append(
                AllergyConflict(allergy.id, allergy.substance, allergy.severity, allergy.reaction, match)
            )
    return conflicts
