"""Distinct, realistic people for the load benchmarks (`fhir_crud.py`, `rest_crud.py`).

Registration refuses a new patient who looks like a registered one (409 ``possible_duplicates``,
through FHIR too), so a load that registers "Mark Bench, 1970-01-01" over and over measures
refusals. `person(key)` is a pure function of an integer key: a given and a family name from
`bench/data/names.json` (ten origins, US names weighted by census frequency, the others
Zipf-weighted in the file's order), a sex, a birth date 1930-2020, an address and a phone number
that no other key has.

`Population` hands out people in key order and skips one who shares a name (given or family)
with an earlier one born the same day, or the full name of an earlier one born on a date one typo
away (a digit, two adjacent digits swapped, day and month swapped): the pairs that the duplicate
rules of the current code (`hims.patients.matching`) and of earlier revisions (same birth date
and a similar given or family name; same phone) take for the same person. What it does not
foresee (a typo-near name on a typo-near date, say) the server still refuses, and the benches
count those refusals.
"""

from __future__ import annotations

import json
import random
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

NAMES_FILE = Path(__file__).resolve().parent / "data" / "names.json"

#: Share of the people by origin of the names (as bench/duplicates.py).
ORIGINS = {
    "us": 40, "gb": 8, "hispanic": 14, "brazil": 5, "france": 4, "germany": 4, "italy": 3,
    "nigeria": 10, "india": 9, "vietnam": 3,
}  # fmt: skip
COUNTRY = {
    "us": ("US", "1", "Springfield"), "gb": ("GB", "44", "Leeds"), "hispanic": ("MX", "52", "Puebla"),
    "brazil": ("BR", "55", "Curitiba"), "france": ("FR", "33", "Lyon"), "germany": ("DE", "49", "Köln"),
    "italy": ("IT", "39", "Bologna"), "nigeria": ("NG", "234", "Ibadan"), "india": ("IN", "91", "Pune"),
    "vietnam": ("VN", "84", "Huế"),
}  # fmt: skip
STREETS = ["Main", "Church", "Oak", "Station", "Market", "High", "Park", "Mill", "Lake", "Victoria",
           "Broad", "King", "Queen", "Cedar", "Elm", "Maple", "River", "Hill", "Bridge",
           "Garden"]  # fmt: skip
STREET_KINDS = ["Street", "Road", "Avenue", "Lane", "Close", "Way"]
FIRST_BIRTH = date(1930, 1, 1)
BIRTH_DAYS = (date(2020, 12, 31) - FIRST_BIRTH).days


@cache
def _lists() -> dict[tuple[str, str], tuple[list[str], list[float]]]:
    """(origin, female|male|family) → (names, cumulative weights)."""
    out: dict[tuple[str, str], tuple[list[str], list[float]]] = {}
    origins = json.loads(NAMES_FILE.read_text(encoding="utf-8"))["origins"]
    for origin, lists in origins.items():
        for kind, values in lists.items():
            if values and isinstance(values[0], list):
                names, weights = [str(v[0]) for v in values], [float(v[1]) for v in values]
            else:
                # The other lists are alphabetical: shuffle them (the same way every run) before
                # giving the first names the most weight, or every "A" name would be common.
                names = [str(v) for v in values]
                random.Random(f"hims-bench-names:{origin}:{kind}").shuffle(names)
                weights = [1 / (rank + 1) ** 0.9 for rank in range(len(names))]
            cumulative, total = [], 0.0
            for weight in weights:
                total += weight
                cumulative.append(total)
            out[(origin, kind)] = (names, cumulative)
    return out


@dataclass(frozen=True)
class Person:
    """One synthetic person."""

    key: int
    given: str
    family: str
    sex: str
    born: date
    phone: str
    address_line: str
    city: str
    country: str

    def rest(self) -> dict[str, Any]:
        """The body of `POST /api/v1/patients`."""
        return {
            "given_name": self.given,
            "family_name": self.family,
            "date_of_birth": self.born.isoformat(),
            "sex_at_birth": self.sex,
            "phone": self.phone,
            "address_line": self.address_line,
            "city": self.city,
            "country": self.country,
        }

    def fhir(self) -> dict[str, Any]:
        """A FHIR R4 Patient."""
        return {
            "resourceType": "Patient",
            "name": [{"family": self.family, "given": [self.given]}],
            "gender": self.sex,
            "birthDate": self.born.isoformat(),
            "telecom": [{"system": "phone", "value": self.phone, "use": "mobile"}],
            "address": [{"line": [self.address_line], "city": self.city, "country": self.country}],
        }


def person(key: int) -> Person:
    """The person of ``key`` (a non-negative integer below 8 billion; the same key, the same person)."""
    rng = random.Random(f"hims-bench-person:{key}")
    lists = _lists()
    origin = rng.choices(list(ORIGINS), list(ORIGINS.values()))[0]
    sex = rng.choice(("female", "male"))

    def pick(kind: str) -> str:
        names, cumulative = lists[(origin, kind)]
        return rng.choices(names, cum_weights=cumulative)[0]

    country, calling_code, city = COUNTRY[origin]
    # The phone number spells the key, so no two people share one.
    phone = f"+{calling_code} {200 + key // 10**7 % 800:03d} {key // 10**4 % 1000:03d} {key % 10**4:04d}"
    street = f"{rng.randint(1, 250)} {rng.choice(STREETS)} {rng.choice(STREET_KINDS)}"
    return Person(
        key=key,
        given=pick(sex),
        family=pick("family"),
        sex=sex,
        born=FIRST_BIRTH + timedelta(days=rng.randrange(BIRTH_DAYS + 1)),
        phone=phone,
        address_line=street,
        city=city,
        country=country,
    )


def _fold(name: str) -> str:
    """A name compared without case or accents."""
    return "".join(c for c in unicodedata.normalize("NFD", name.casefold()) if not unicodedata.combining(c))


def _one_typo_apart(a: date, b: date) -> bool:
    """Whether ``b`` is ``a`` with one digit wrong, two adjacent digits swapped, or day and month
    swapped (the birth-date slips a duplicate rule forgives)."""
    x, y = a.strftime("%Y%m%d"), b.strftime("%Y%m%d")
    diffs = [i for i in range(8) if x[i] != y[i]]
    if len(diffs) <= 1:
        return True
    swapped = (
        len(diffs) == 2
        and diffs[1] == diffs[0] + 1
        and x[diffs[0]] == y[diffs[1]]
        and x[diffs[1]] == y[diffs[0]]
    )
    return swapped or (a.year == b.year and a.month == b.day and a.day == b.month)


class Population:
    """People in key order from ``first``, skipping anyone an earlier one could be taken for."""

    def __init__(self, first: int = 0) -> None:
        self.next_key = first
        self.skipped = 0
        self._births_by_name: dict[tuple[str, str], list[date]] = {}
        self._names_by_day: set[tuple[date, str]] = set()

    def next(self) -> Person:
        """The next person unlike every earlier one."""
        while True:
            candidate = person(self.next_key)
            self.next_key += 1
            full = (_fold(candidate.given), _fold(candidate.family))
            names = {(candidate.born, part) for name in full for part in name.split()}
            births = self._births_by_name.setdefault(full, [])
            if names & self._names_by_day or any(_one_typo_apart(candidate.born, b) for b in births):
                self.skipped += 1
                continue
            births.append(candidate.born)
            self._names_by_day |= names
            return candidate
