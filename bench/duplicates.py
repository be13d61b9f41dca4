"""Duplicate-patient detection measured on a labelled set: precision, recall, false positives.

    .venv/bin/python bench/duplicates.py [--patients 10000] [--per-kind 200] [--random-new 5000] [--seed 7]

Builds a population of registered patients (the 28 Synthea patients of tests/data plus generated
households drawn from the name lists in bench/data/names.json), loads it into a fresh database
(one per run, on ``HIMS_BENCH_SERVER_URL``) with COPY of the domain columns — a bench fixture:
no service, no PHI log rows, the generated key columns computed by PostgreSQL — and ANALYZEs.
Then every probe (a registration labelled "duplicate of X" or "new") goes through
`hims.patients.service.find_duplicates`, the code registration runs, in a transaction rolled back
afterwards, and through the rule it replaced (given name and birth date, or a shared phone, e-mail
or national id; re-created here in SQL, trigram similarity as before), in the same run.

Prints, for both rules: precision, recall and F1 on the labelled set, the confusion counts per
kind of probe, the false-positive rate on random new patients, and the time per check; then the
plan of the candidate query. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import random
import string
import time
import unicodedata
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from _fhir_common import cleaning_up, fresh_database, pct
from hims.core.db import Database
from hims.patients import matching, repository, service
from hims.patients.mrn import format_mrn
from hims.patients.schemas import PatientCreate

ROOT = Path(__file__).resolve().parents[1]
NAMES = json.loads((ROOT / "bench/data/names.json").read_text(encoding="utf-8"))["origins"]
SYNTHEA = ROOT / "tests/data/fhir/synthea"
console = Console(width=150)

#: Share of the population by origin of the names.
ORIGINS = {
    "us": 40, "gb": 8, "hispanic": 14, "brazil": 5, "france": 4, "germany": 4, "italy": 3,
    "nigeria": 10, "india": 9, "vietnam": 3,
}  # fmt: skip
COUNTRY = {
    "us": ("US", "1"), "gb": ("GB", "44"), "hispanic": ("MX", "52"), "brazil": ("BR", "55"),
    "france": ("FR", "33"), "germany": ("DE", "49"), "italy": ("IT", "39"), "nigeria": ("NG", "234"),
    "india": ("IN", "91"), "vietnam": ("VN", "84"),
}  # fmt: skip
STREETS = ["Main", "Church", "Oak", "Station", "Market", "High", "Park", "Mill", "Lake", "Victoria",
           "Broad", "King", "Queen", "Cedar", "Elm", "Maple", "River", "Hill", "Bridge",
           "Garden"]  # fmt: skip
STREET_KINDS = ["Street", "Road", "Avenue", "Lane", "Close", "Way"]

#: Nicknames people give at a front desk, both directions used. Chosen for this bench, not copied
#: from the matcher's table: a few (Lalo, Beto, Liam, Fritz) are deliberately ones it lacks.
BENCH_NICKNAMES = {
    "William": ["Bill", "Will", "Billy", "Liam"], "Elizabeth": ["Liz", "Beth", "Betty", "Lizzie"],
    "Robert": ["Bob", "Rob", "Bobby"], "Katherine": ["Kate", "Kathy", "Katie"],
    "Catherine": ["Cathy", "Kate"],
    "James": ["Jim", "Jimmy", "Jamie"], "Margaret": ["Peggy", "Maggie", "Meg"], "Richard": ["Rick", "Dick"],
    "Michael": ["Mike", "Mick"], "Thomas": ["Tom", "Tommy"], "Joseph": ["Joe", "Joey"],
    "Charles": ["Charlie", "Chuck"], "Christopher": ["Chris"], "Daniel": ["Dan", "Danny"],
    "Matthew": ["Matt"], "Anthony": ["Tony"], "Edward": ["Ed", "Ted", "Eddie"], "Jennifer": ["Jenny", "Jen"],
    "Patricia": ["Pat", "Patty", "Trish"], "Susan": ["Sue", "Suzy"], "Deborah": ["Debbie", "Deb"],
    "Rebecca": ["Becky"], "Alexander": ["Alex"], "Alexandra": ["Alex", "Sandra"], "Samuel": ["Sam"],
    "Benjamin": ["Ben"], "Nicholas": ["Nick"], "Jonathan": ["Jon"], "Steven": ["Steve"],
    "Stephen": ["Steve"], "Timothy": ["Tim"], "Kenneth": ["Ken"], "Ronald": ["Ron"], "Donald": ["Don"],
    "Gregory": ["Greg"], "Jessica": ["Jess"], "Victoria": ["Vicky", "Tori"], "Abigail": ["Abby"],
    "Samantha": ["Sam"], "Dorothy": ["Dot", "Dolly"], "Barbara": ["Barb", "Babs"], "David": ["Dave"],
    "Andrew": ["Andy", "Drew"], "Jacqueline": ["Jackie"], "Francisco": ["Paco", "Pancho"], "José": ["Pepe"],
    "Ignacio": ["Nacho"], "Guadalupe": ["Lupe"], "Manuel": ["Manolo"], "Dolores": ["Lola"],
    "Eduardo": ["Lalo"], "Roberto": ["Beto"], "Giuseppe": ["Beppe"], "Friedrich": ["Fritz"],
    "Oluwaseun": ["Seun"], "Oluwafemi": ["Femi"], "Chukwuemeka": ["Emeka"],
}  # fmt: skip
#: Boy-girl twins are often given paired names.
PAIRED_NAMES = [
    ("Daniel", "Daniela"), ("Christian", "Christina"), ("Gabriel", "Gabriela"), ("Adrian", "Adriana"),
    ("Julian", "Juliana"), ("Paul", "Paula"), ("Louis", "Louise"), ("Eric", "Erica"), ("Aaron", "Erin"),
    ("Francis", "Frances"), ("Carlos", "Carla"), ("Mario", "Maria"),
]  # fmt: skip
NICK_TO_FULL: dict[str, list[str]] = defaultdict(list)
for _full, _nicks in BENCH_NICKNAMES.items():
    for _nick in _nicks:
        NICK_TO_FULL[_nick].append(_full)


@dataclass
class Person:
    """A registered patient or a registration attempt, as the bench builds it."""

    given_name: str
    family_name: str
    date_of_birth: date
    sex_at_birth: str
    origin: str
    middle_name: str | None = None
    phone: str | None = None
    email: str | None = None
    address_line: str | None = None
    city: str | None = None
    postal_code: str | None = None
    national_id: str | None = None
    household: int = -1
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    def create(self) -> PatientCreate:
        """The registration body."""
        identifiers = (
            [{"type": "national_id", "system": f"urn:bench:{self.origin}", "value": self.national_id}]
            if self.national_id
            else []
        )
        return PatientCreate.model_validate(
            {
                "given_name": self.given_name,
                "middle_name": self.middle_name,
                "family_name": self.family_name,
                "date_of_birth": self.date_of_birth,
                "sex_at_birth": self.sex_at_birth,
                "phone": self.phone,
                "email": self.email,
                "address_line": self.address_line,
                "city": self.city,
                "postal_code": self.postal_code,
                "country": COUNTRY[self.origin][0],
                "identifiers": identifiers,
            }
        )


@dataclass
class Probe:
    """A registration attempt with its label: the registered person it duplicates, or None."""

    kind: str
    person: Person
    duplicate_of: uuid.UUID | None


# ---------------------------------------------------------------------------------------------
# population


class Names:
    """Weighted samplers over the name lists (US lists carry census weights; the others get a
    Zipf-like weight over a seeded shuffle, as real name frequencies are heavy-tailed)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.lists: dict[tuple[str, str], tuple[list[str], list[float]]] = {}
        for origin, lists in NAMES.items():
            for kind, values in lists.items():
                if values and isinstance(values[0], list):
                    names, weights = [v[0] for v in values], [float(v[1]) for v in values]
                else:
                    names = list(values)
                    rng.shuffle(names)
                    weights = [1 / (rank + 1) ** 0.9 for rank in range(len(names))]
                self.lists[(origin, kind)] = (names, weights)

    def pick(self, origin: str, kind: str) -> str:
        """One name of ``kind`` (female, male, family) for ``origin``."""
        names, weights = self.lists[(origin, kind)]
        return self.rng.choices(names, weights)[0]

    def most_common(self, origin: str, kind: str) -> str:
        """The most frequent name of a list."""
        names, weights = self.lists[(origin, kind)]
        return max(zip(weights, names, strict=True))[1]


def ascii_fold(value: str) -> str:
    """Accents dropped, as a keyboard without them types the name."""
    value = value.translate(
        str.maketrans({"ß": "ss", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D"})
    )
    return "".join(c for c in unicodedata.normalize("NFD", value) if not unicodedata.combining(c))


class Generator:
    """Households of people with names, birth dates 1930-2020, phones, e-mails, addresses, ids."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.names = Names(self.rng)
        self.used_numbers: set[str] = set()
        self.households = 0

    def origin(self) -> str:
        return self.rng.choices(list(ORIGINS), list(ORIGINS.values()))[0]

    def number(self, digits: int) -> str:
        while True:
            value = "".join(self.rng.choice(string.digits) for _ in range(digits))
            if value[0] != "0" and value not in self.used_numbers:
                self.used_numbers.add(value)
                return value

    def phone(self, origin: str) -> str:
        raw = self.number(10)
        style = self.rng.random()
        if style < 0.4:
            return f"+{COUNTRY[origin][1]} {raw[:3]} {raw[3:6]} {raw[6:]}"
        if style < 0.8:
            return f"{raw[:3]}-{raw[3:6]}-{raw[6:]}"
        return raw

    def national_id(self, origin: str) -> str:
        if origin == "us":
            raw = self.number(9)
            return f"{raw[:3]}-{raw[3:5]}-{raw[5:]}"
        if origin == "gb":
            letters = "".join(self.rng.choice("ABCEGHJKLMNPRSTWXYZ") for _ in range(2))
            return f"{letters}{self.number(6)}{self.rng.choice('ABCD')}"
        if origin == "india":
            raw = self.number(12)
            return f"{raw[:4]} {raw[4:8]} {raw[8:]}"
        return self.number(11)

    def email(self, person: Person) -> str:
        local = (
            ascii_fold(f"{person.given_name}.{person.family_name}").lower().replace(" ", "").replace("'", "")
        )
        domain = self.rng.choice(["example.org", "mail.test", "example.net"])
        return f"{local}{self.rng.randint(1, 9999)}@{domain}"

    def given(self, origin: str, sex: str) -> str:
        return self.names.pick(origin, sex)

    def person(self, origin: str, sex: str, family: str, born: date, household: int) -> Person:
        person = Person(
            given_name=self.given(origin, sex),
            family_name=family,
            date_of_birth=born,
            sex_at_birth=sex,
            origin=origin,
            household=household,
        )
        if origin in ("us", "gb") and self.rng.random() < 0.4:
            person.middle_name = self.given(origin, sex)
        adult = born.year <= 2004
        if adult and self.rng.random() < 0.7:
            person.phone = self.phone(origin)
        if adult and self.rng.random() < 0.5:
            person.email = self.email(person)
        if self.rng.random() < 0.6:
            person.national_id = self.national_id(origin)
        return person

    def birth(self, start: int, end: int) -> date:
        first, last = date(start, 1, 1), date(end, 12, 31)
        return first + timedelta(days=self.rng.randint(0, (last - first).days))

    def household(self) -> list[Person]:
        """One household: an adult, maybe a partner, maybe children (3 % of births are twins)."""
        self.households += 1
        hid = self.households
        origin = self.origin()
        family = self.names.pick(origin, "family")
        address = f"{self.rng.randint(1, 400)} {self.rng.choice(STREETS)} {self.rng.choice(STREET_KINDS)}" + (
            f" Apt {self.rng.randint(1, 60)}" if self.rng.random() < 0.3 else ""
        )
        postal = self.number(5)
        home_phone = self.phone(origin) if self.rng.random() < 0.5 else None
        sex = self.rng.choice(["female", "male"])
        first = self.person(origin, sex, family, self.birth(1930, 2000), hid)
        people = [first]
        size = self.rng.choices([1, 2, 3, 4, 5], [30, 30, 18, 14, 8])[0]
        if size >= 2:
            partner_sex = "male" if sex == "female" and self.rng.random() < 0.95 else "female"
            partner_family = family if self.rng.random() < 0.7 else self.names.pick(origin, "family")
            born = first.date_of_birth + timedelta(days=self.rng.randint(-2500, 2500))
            people.append(self.person(origin, partner_sex, partner_family, born, hid))
        mother = next((p for p in people if p.sex_at_birth == "female"), first)
        while len(people) < size:
            born = mother.date_of_birth + timedelta(days=self.rng.randint(18 * 365, 42 * 365))
            if born > date(2020, 12, 31):
                break
            people.append(self.person(origin, self.rng.choice(["female", "male"]), family, born, hid))
            if len(people) < size and self.rng.random() < 0.03:
                twin_sex = self.rng.choice(["female", "male"])
                twin = self.person(origin, twin_sex, family, born, hid)
                if twin.given_name != people[-1].given_name:
                    people.append(twin)
        for p in people:
            p.address_line, p.postal_code = address, postal
            p.city = "Springfield"
            if p.phone is None and home_phone:
                p.phone = home_phone
        return people


def synthea_people() -> list[tuple[Person, str | None]]:
    """The 28 Synthea patients (official name), with the maiden name where Synthea has one."""
    out = []
    for path in sorted(SYNTHEA.glob("*.json.gz")):
        bundle = json.loads(gzip.decompress(path.read_bytes()))
        for entry in bundle["entry"]:
            r = entry["resource"]
            if r["resourceType"] != "Patient":
                continue
            names = {n.get("use"): n for n in r["name"]}
            official = names.get("official", r["name"][0])
            address = (r.get("address") or [{}])[0]
            ssn = next(
                (
                    i["value"]
                    for i in r["identifier"]
                    if i.get("type", {}).get("coding", [{}])[0].get("code") == "SS"
                ),
                None,
            )
            person = Person(
                given_name=official["given"][0],
                middle_name=official["given"][1] if len(official["given"]) > 1 else None,
                family_name=official["family"],
                date_of_birth=date.fromisoformat(r["birthDate"]),
                sex_at_birth=r["gender"],
                origin="us",
                phone=next((t["value"] for t in r.get("telecom", []) if t.get("system") == "phone"), None),
                address_line=(address.get("line") or [None])[0],
                city=address.get("city"),
                postal_code=address.get("postalCode"),
                national_id=ssn,
            )
            maiden = names.get("maiden")
            out.append((person, maiden["family"] if maiden else None))
    return out


def population(gen: Generator, size: int) -> tuple[list[Person], dict[str, str]]:
    """``size`` registered people: the Synthea patients first, then generated households."""
    synthea = synthea_people()
    people = [p for p, _ in synthea]
    maiden = {str(p.id): m for p, m in synthea if m}
    while len(people) < size:
        people.extend(gen.household())
    return people[:size], maiden


# ---------------------------------------------------------------------------------------------
# probes


def typo(rng: random.Random, name: str) -> str:
    """One edit: a letter replaced, dropped, doubled or swapped with its neighbour."""
    key = matching.name_key(name)
    while True:
        chars = list(name)
        positions = [i for i, c in enumerate(chars) if c.isalpha()]
        i = rng.choice(positions[:-1] if len(positions) > 1 else positions)
        op = rng.choice(["replace", "drop", "double", "swap"])
        if op == "replace":
            chars[i] = rng.choice(string.ascii_lowercase)
        elif op == "drop":
            del chars[i]
        elif op == "double":
            chars.insert(i, chars[i].lower())
        elif i + 1 < len(chars):
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        out = "".join(chars)
        if matching.name_key(out) != key and len(matching.name_key(out)) >= 2:
            return out


def registration(rng: random.Random, person: Person, *, keep_contact: float = 0.5) -> Person:
    """``person`` registered again: each contact detail and the national id given or not."""
    copy = replace(person, id=uuid.uuid4())
    for name in ("phone", "email", "national_id"):
        if rng.random() > keep_contact:
            setattr(copy, name, None)
    if rng.random() > keep_contact:
        copy.address_line = copy.postal_code = None
    return copy


def respell_id(rng: random.Random, value: str) -> str:
    """The same national id typed differently: separators changed, letters in another case."""
    bare = "".join(c for c in value if c.isalnum())
    style = rng.choice(["bare", "spaces", "dots", "lower"])
    if style == "bare" and bare != value:
        return bare
    if style == "dots":
        return ".".join(bare[i : i + 3] for i in range(0, len(bare), 3))
    if style == "lower" and any(c.isalpha() for c in bare):
        return " ".join(bare[i : i + 2] for i in range(0, len(bare), 2)).lower()
    return " ".join(bare[i : i + 3] for i in range(0, len(bare), 3))


def build_probes(
    gen: Generator, people: list[Person], maiden: dict[str, str], per_kind: int, random_new: int
) -> list[Probe]:
    """Labelled probes: duplicates of registered people by kind of perturbation, new people (hard
    ones by kind), and ``random_new`` new people from the population's generator."""
    rng = gen.rng
    probes: list[Probe] = []

    def sample(condition: Callable[[Person], bool]) -> list[Person]:
        eligible = [p for p in people if condition(p)]
        return rng.sample(eligible, min(per_kind, len(eligible)))

    def dup(kind: str, condition: Callable[[Person], bool], change: Callable[[Person], None]) -> None:
        for original in sample(condition):
            attempt = registration(rng, original)
            change(attempt)
            probes.append(Probe(kind, attempt, original.id))

    dup("exact", lambda p: True, lambda a: None)
    dup(
        "typo_given",
        lambda p: len(p.given_name) >= 4,
        lambda a: setattr(a, "given_name", typo(rng, a.given_name)),
    )
    dup(
        "typo_family",
        lambda p: len(p.family_name) >= 4,
        lambda a: setattr(a, "family_name", typo(rng, a.family_name)),
    )

    def swap(a: Person) -> None:
        a.given_name, a.family_name = a.family_name, a.given_name

    dup("swapped_names", lambda p: True, swap)

    def nickname(a: Person) -> None:
        options = BENCH_NICKNAMES.get(a.given_name) or NICK_TO_FULL[a.given_name]
        a.given_name = rng.choice(options)

    dup("nickname", lambda p: p.given_name in BENCH_NICKNAMES or p.given_name in NICK_TO_FULL, nickname)

    def married(original: Person) -> Person:
        attempt = replace(original, id=uuid.uuid4(), phone=None, email=None, national_id=None)
        attempt.address_line = attempt.postal_code = None
        known = [k for k in ("phone", "email", "address_line") if getattr(original, k)]
        kept = rng.choice(known)
        setattr(attempt, kept, getattr(original, kept))
        if kept == "address_line":
            attempt.postal_code = original.postal_code
        synthea_maiden = maiden.get(str(original.id))
        while True:
            attempt.family_name = synthea_maiden or gen.names.pick(original.origin, "family")
            if matching.name_key(attempt.family_name) != matching.name_key(original.family_name):
                return attempt
            synthea_maiden = None

    def may_marry(p: Person) -> bool:
        return (
            p.sex_at_birth == "female"
            and p.date_of_birth.year <= 2002
            and bool(p.phone or p.email or p.address_line)
        )

    for original in sample(may_marry):
        probes.append(Probe("married_name", married(original), original.id))
    dup("middle_name_missing", lambda p: p.middle_name is not None, lambda a: setattr(a, "middle_name", None))

    def fold(a: Person) -> None:
        a.given_name, a.family_name = ascii_fold(a.given_name), ascii_fold(a.family_name)

    dup("accents_dropped", lambda p: not (p.given_name + p.family_name).isascii(), fold)

    def swap_date(a: Person) -> None:
        a.date_of_birth = a.date_of_birth.replace(month=a.date_of_birth.day, day=a.date_of_birth.month)

    dup(
        "birth_date_day_month_swapped",
        lambda p: p.date_of_birth.day <= 12 and p.date_of_birth.day != p.date_of_birth.month,
        swap_date,
    )

    def mistype_date(a: Person) -> None:
        a.date_of_birth = rng.choice(
            [
                d
                for d in matching.birth_date_variants(a.date_of_birth)
                if d.year >= 1900 and d <= date(2024, 12, 31)
            ]
        )

    dup("birth_date_typo", lambda p: True, mistype_date)

    def national_id(original: Person) -> Person:
        attempt = registration(rng, original)
        assert original.national_id
        attempt.national_id = respell_id(rng, original.national_id)
        if rng.random() < 0.5:  # and the name typed with a slip, or changed since
            attempt.family_name = (
                typo(rng, original.family_name) if len(original.family_name) >= 4 else "Other"
            )
        return attempt

    for original in sample(lambda p: p.national_id is not None):
        probes.append(Probe("national_id_respelled", national_id(original), original.id))

    # Two slips at once, as happens: any two of the single perturbations above that combine.
    slips: dict[str, Callable[[Person], None]] = {
        "nickname": nickname,
        "given typo": lambda a: setattr(a, "given_name", typo(rng, a.given_name)),
        "family typo": lambda a: setattr(a, "family_name", typo(rng, a.family_name)),
        "accents": fold,
        "middle missing": lambda a: setattr(a, "middle_name", None),
        "day/month": swap_date,
        "names swapped": swap,
    }
    for original in sample(lambda p: len(p.given_name) >= 4 and len(p.family_name) >= 4):
        attempt = registration(rng, original)
        given = original.given_name
        usable = [k for k in slips if k != "nickname" or given in BENCH_NICKNAMES or given in NICK_TO_FULL]
        if not matching.day_month_swapped(original.date_of_birth):
            usable.remove("day/month")
        order = list(slips)  # a nickname replaces the name as registered; swapping names comes last
        for kind in sorted(rng.sample(usable, 2), key=order.index):
            slips[kind](attempt)
        probes.append(Probe("two_slips", attempt, original.id))

    # New people. Hard ones first: each looks like a registered person in one way or two.
    def new_person(base: Person, **changes: Any) -> Person:
        person = gen.person(
            base.origin,
            changes.pop("sex_at_birth", base.sex_at_birth),
            base.family_name,
            base.date_of_birth,
            -1,
        )
        for name, value in changes.items():
            setattr(person, name, value)
        return person

    for base in sample(lambda p: True):
        family = base.family_name
        while matching.name_key(family) == matching.name_key(base.family_name):
            family = gen.names.pick(gen.origin(), "family")
        probes.append(
            Probe(
                "new_same_given_and_birth_date",
                new_person(base, given_name=base.given_name, family_name=family),
                None,
            )
        )

    def other_given(base: Person, sex: str) -> str:
        while True:
            given = gen.given(base.origin, sex)
            if matching.name_key(given) != matching.name_key(base.given_name):
                return given

    for base in sample(lambda p: True):
        sex = rng.choice(["female", "male"])
        twin = new_person(
            base,
            sex_at_birth=sex,
            given_name=other_given(base, sex),
            phone=base.phone,
            address_line=base.address_line,
            postal_code=base.postal_code,
            middle_name=None,
        )
        probes.append(Probe("new_twin", twin, None))
    paired = {a: b for pair in PAIRED_NAMES for a, b in (pair, pair[::-1])}
    for base in sample(lambda p: p.given_name in paired):
        sex = "female" if base.sex_at_birth == "male" else "male"
        twin = new_person(
            base,
            sex_at_birth=sex,
            given_name=paired[base.given_name],
            phone=base.phone,
            address_line=base.address_line,
            postal_code=base.postal_code,
            middle_name=None,
        )
        probes.append(Probe("new_twin_paired_name", twin, None))
    for base in sample(lambda p: True):
        probes.append(
            Probe(
                "new_same_family_and_birth_date",
                new_person(base, given_name=other_given(base, base.sex_at_birth)),
                None,
            )
        )
    for base in sample(lambda p: p.origin in ("us", "hispanic", "nigeria", "india")):
        sex = base.sex_at_birth
        common = Person(
            given_name=gen.names.most_common(base.origin, sex),
            family_name=gen.names.most_common(base.origin, "family"),
            date_of_birth=gen.birth(1930, 2020),
            sex_at_birth=sex,
            origin=base.origin,
        )
        probes.append(Probe("new_common_name", common, None))
    for base in sample(lambda p: p.address_line is not None):
        sex = rng.choice(["female", "male"])
        member = new_person(
            base,
            sex_at_birth=sex,
            given_name=other_given(base, sex),
            phone=base.phone,
            email=base.email,
            address_line=base.address_line,
            postal_code=base.postal_code,
            date_of_birth=base.date_of_birth + timedelta(days=rng.choice([-1, 1]) * rng.randint(400, 12000)),
        )
        probes.append(Probe("new_household_member", member, None))
    for base in sample(lambda p: p.date_of_birth.year <= 1990):
        junior = new_person(
            base,
            given_name=base.given_name,
            phone=base.phone,
            address_line=base.address_line,
            postal_code=base.postal_code,
            sex_at_birth=base.sex_at_birth,
            date_of_birth=base.date_of_birth + timedelta(days=rng.randint(20 * 365, 30 * 365)),
        )
        probes.append(Probe("new_junior", junior, None))
    fresh = Generator(rng.randint(0, 2**31))
    fresh.used_numbers = gen.used_numbers
    randoms: list[Person] = []
    while len(randoms) < random_new:
        randoms.extend(fresh.household())
    for person in randoms[:random_new]:
        probes.append(Probe("new_random", person, None))
    return [p for p in probes if p.person.date_of_birth <= date(2024, 12, 31)]


# ---------------------------------------------------------------------------------------------
# loading and running

COLUMNS = [
    "id", "mrn", "given_name", "middle_name", "family_name", "date_of_birth", "sex_at_birth", "phone",
    "email", "address_line", "city", "postal_code", "country", "identifiers", "deceased", "active", "version",
]  # fmt: skip


async def load(url: str, people: list[Person]) -> float:
    """COPY the population's domain columns (keys generated by PostgreSQL), then ANALYZE."""
    started = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        records = []
        for i, p in enumerate(people):
            body = p.create()
            identifiers = [i.model_dump() for i in body.identifiers]
            records.append(
                (
                    p.id,
                    format_mrn(100001 + i),
                    body.given_name,
                    body.middle_name,
                    body.family_name,
                    body.date_of_birth,
                    body.sex_at_birth,
                    body.phone,
                    body.email,
                    body.address_line,
                    body.city,
                    body.postal_code,
                    body.country,
                    json.dumps(identifiers),
                    False,
                    True,
                    1,
                )
            )
        for start in range(0, len(records), 5000):
            await conn.copy_records_to_table(
                "patients", records=records[start : start + 5000], columns=COLUMNS
            )
        await conn.execute("SELECT setval('patients_mrn_seq', $1)", 100001 + len(people))
        await conn.execute("ANALYZE patients")
    finally:
        await conn.close()
    return time.perf_counter() - started


#: The rule this replaced (hims.patients.repository.duplicate_candidates before 0015), in SQL:
#: any row returned made registration answer 409.
BASELINE_SQL = """
SELECT id FROM patients
WHERE deleted_at IS NULL AND merged_into_id IS NULL AND (
    (date_of_birth = $1 AND {name_score} >= 0.45)
    OR ($4::text IS NOT NULL AND phone_digits = $4)
    OR ($5::text IS NOT NULL AND email_key = $5)
    OR (cardinality($6::text[]) > 0 AND identifiers @> ANY (
        SELECT jsonb_build_array(jsonb_build_object('type', 'national_id', 'value', v))
        FROM unnest($6::text[]) AS v)))
LIMIT 10
"""
TRIGRAM_SCORE = (
    "0.5 * similarity(family_name_key, hims_name_key($2))"
    " + 0.5 * similarity(given_name_key, hims_name_key($3))"
)
EXACT_SCORE = (
    "0.5 * (family_name_key = hims_name_key($2))::int + 0.5 * (given_name_key = hims_name_key($3))::int"
)


async def baseline(conn: asyncpg.Connection, sql: str, body: PatientCreate) -> set[uuid.UUID]:
    """Ids the old rule reported."""
    rows = await conn.fetch(
        sql,
        body.date_of_birth,
        body.family_name,
        body.given_name,
        matching.phone_digits(body.phone) or None,
        body.email.lower() if body.email else None,
        [i.value for i in body.identifiers if i.type == "national_id"],
    )
    return {r["id"] for r in rows}


@dataclass
class Tally:
    """Outcomes of one rule per kind of probe."""

    counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    seconds: list[float] = field(default_factory=list)

    def add(self, probe: Probe, flagged: set[uuid.UUID]) -> None:
        """Count a probe: TP/FN for duplicates (the right person flagged or not), FP/TN for new ones."""
        c = self.counts[probe.kind]
        if probe.duplicate_of is not None:
            c["TP" if probe.duplicate_of in flagged else "FN"] += 1
            if flagged - {probe.duplicate_of}:
                c["wrong"] += 1
        else:
            c["FP" if flagged else "TN"] += 1

    def totals(self, *, include_random: bool = True) -> Counter[str]:
        """Summed counts over kinds (the labelled set)."""
        total: Counter[str] = Counter()
        for kind, c in self.counts.items():
            if include_random or kind != "new_random":
                total.update(c)
        return total


def scores(c: Counter[str]) -> tuple[float, float, float]:
    """Precision, recall, F1 from counts."""
    precision = c["TP"] / max(1, c["TP"] + c["FP"])
    recall = c["TP"] / max(1, c["TP"] + c["FN"])
    return precision, recall, 2 * precision * recall / max(1e-9, precision + recall)


async def run(args: argparse.Namespace) -> None:
    gen = Generator(args.seed)
    people, maiden = population(gen, args.patients)
    probes = build_probes(gen, people, maiden, args.per_kind, args.random_new)
    url = await fresh_database("hims_bench_duplicates")
    seconds = await load(url, people)
    duplicates = sum(p.duplicate_of is not None for p in probes)
    console.print(
        f"population: {len(people):,} patients ({gen.households:,} households + 28 Synthea) loaded by COPY "
        f"in {seconds:.1f}s; probes: {len(probes):,} ({duplicates:,} duplicates)"
    )
    conn = await asyncpg.connect(url)
    trigram = bool(await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'"))
    old_sql = BASELINE_SQL.format(name_score=TRIGRAM_SCORE if trigram else EXACT_SCORE)
    db = Database(url, pool_size=2)
    old, new = Tally(), Tally()
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("checking probes (old rule, then new)", total=len(probes))
            for probe in probes:
                body = probe.person.create()
                started = time.perf_counter()
                flagged_old = await baseline(conn, old_sql, body)
                old.seconds.append(time.perf_counter() - started)
                old.add(probe, flagged_old)
                started = time.perf_counter()
                async with db.driver_transaction() as tx:
                    values = {**body.model_dump(), "identifiers": [i.model_dump() for i in body.identifiers]}
                    candidates = await service.find_duplicates(conn=tx, values=values)
                new.seconds.append(time.perf_counter() - started)
                new.add(probe, {c.id for c in candidates})
                progress.advance(task)
        report(old, new, trigram)
        await explain(conn, probes)
    finally:
        await conn.close()
        await db.dispose()


def report(old: Tally, new: Tally, trigram: bool) -> None:
    """Per-kind confusion and the headline figures for both rules."""
    table = Table(title="confusion per kind of probe (old rule | new rule)")
    for column in ("kind", "n", "old TP/FN or FP/TN", "new TP/FN or FP/TN", "new: other person flagged"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind in sorted(new.counts, key=lambda k: (k.startswith("new_"), k)):
        o, n = old.counts[kind], new.counts[kind]
        if kind.startswith("new_"):
            table.add_row(
                kind,
                str(n["FP"] + n["TN"]),
                f"FP {o['FP']} / TN {o['TN']}",
                f"FP {n['FP']} / TN {n['TN']}",
                "",
            )
        else:
            table.add_row(
                kind,
                str(n["TP"] + n["FN"]),
                f"TP {o['TP']} / FN {o['FN']}",
                f"TP {n['TP']} / FN {n['FN']}",
                str(n["wrong"]),
            )
    console.print(table)
    for label, tally in (
        ("old rule" + (" (pg_trgm)" if trigram else " (exact keys)"), old),
        ("new rule", new),
    ):
        labelled = tally.totals(include_random=False)
        p, r, f1 = scores(labelled)
        rnd = tally.counts["new_random"]
        fp_rate = rnd["FP"] / max(1, rnd["FP"] + rnd["TN"])
        p2, r2, f2 = scores(tally.totals(include_random=True))
        console.print(
            f"[bold]{label}[/]\n"
            f"  labelled set without random:  precision {p:.3f}  recall {r:.3f}  F1 {f1:.3f}\n"
            f"  labelled set with random:     precision {p2:.3f}  recall {r2:.3f}  F1 {f2:.3f}\n"
            f"  random new patients flagged:  {rnd['FP']}/{rnd['FP'] + rnd['TN']} = {100 * fp_rate:.2f} %\n"
            f"  time per check:               p50 {pct(tally.seconds, 0.5):.2f} ms  "
            f"p95 {pct(tally.seconds, 0.95):.2f} ms"
        )
    console.print(
        "(old rule timed as its SQL alone; new rule as find_duplicates: session, query, scoring, PHI log row)"
    )


async def explain(conn: asyncpg.Connection, probes: list[Probe]) -> None:
    """The candidate query's plan for one probe: every branch should be an index scan."""
    body = next(
        p for p in probes if p.person.phone and p.person.email and p.person.national_id
    ).person.create()
    born = body.date_of_birth
    plan = await conn.fetch(
        "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) " + repository.DUPLICATE_CANDIDATES_SQL,
        [born, *matching.day_month_swapped(born)],
        body.family_name,
        body.given_name,
        matching.birth_date_variants(born),
        matching.phone_digits(body.phone),
        body.email,
        [matching.national_id_key(i.value) for i in body.identifiers],
        500,
    )
    lines = [r[0] for r in plan]
    console.print(
        "plan of repository.DUPLICATE_CANDIDATES_SQL (one probe with phone, e-mail and national id):"
    )
    for line in lines:
        console.print("   " + line, markup=False, highlight=False, soft_wrap=True)
    if any("Seq Scan on patients" in line for line in lines):
        console.print("[red]a branch scans the whole patients table[/]")


def main() -> None:
    """Parse the arguments and run the bench (its database is dropped at the end)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=10_000, help="registered population")
    parser.add_argument("--per-kind", type=int, default=200, help="probes per kind of duplicate or hard new")
    parser.add_argument(
        "--random-new", type=int, default=5_000, help="random new patients (false-positive rate)"
    )
    parser.add_argument("--seed", type=int, default=7)
    asyncio.run(cleaning_up(run(parser.parse_args())))


if __name__ == "__main__":
    main()
