"""Is a new registration the same person as an existing patient? The decision, without SQL or I/O.

`compare` weighs independent signals in points (log-odds-like: positive is evidence for "same
person", negative against), turns the sum into a score in [0, 1] with a logistic centred on
``PIVOT_POINTS`` and reports a duplicate when the score is at least ``THRESHOLD`` (0.5, i.e. 7
points). The reasons are stable codes for the 409 body. The repository only fetches candidates
(blocking); every fuzzy comparison is here, so the rule is the same with or without pg_trgm.

The weights were set on the labelled set of ``bench/duplicates.py`` (docs/clinical-patients.md).
Three principles: a birth date that disagrees outright is strong evidence against (people misspell
names far more often than dates); contact details (phone, e-mail, address) are shared by a
household, so they never make a duplicate on their own and add nothing where twins would match
too; and twins differ only in the given name, so a different sex counts hard against a merely
similar given name.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from functools import cache, lru_cache
from typing import TypeVar

from hims.patients.nicknames import EXTRA_NICKNAMES, NICKNAMES

PIVOT_POINTS = 7.0
THRESHOLD = 0.5

# Points per signal.
BIRTH_DATE_SAME = 3.0
BIRTH_DATE_DAY_MONTH_SWAPPED = 2.0
BIRTH_DATE_TYPO = 1.0  # one digit wrong, or two adjacent digits swapped
BIRTH_DATE_DIFFERS = -4.0
NAME_SAME = 3.0  # each of given and family name
GIVEN_NICKNAME = 2.5
NAME_TYPO = 2.0  # one edit (two for names of 8+ letters)
NAME_PART = 2.0  # one name is some of the other's words ("García" / "García López")
SWAPPED_NAME = 2.5  # each of the two names, when given and family were entered the other way round
GIVEN_DIFFERS = -4.0
FAMILY_DIFFERS = -3.0
FAMILY_CHANGED = 0.0  # family differs but a contact detail agrees: marriage, divorce, adoption
PHONE_SAME = 2.0
EMAIL_SAME = 2.5
ADDRESS_SAME = 1.5
CONTACT_CAP = 3.0  # a household shares all three: together they are worth no more than this
NATIONAL_ID_SAME = 6.0
NATIONAL_ID_DIFFERS = -2.0
SEX_DIFFERS = -4.0  # both female/male and different, and the given names are not the same
MIDDLE_INITIAL_DIFFERS = -1.5  # both have a middle name, with different initials

#: Every reason code `compare` can return.
REASONS = (
    "same_national_id",
    "same_birth_date_similar_name",
    "same_birth_date",
    "birth_date_day_month_swapped",
    "birth_date_typo",
    "nickname",
    "name_typo",
    "name_part",
    "swapped_names",
    "family_name_changed",
    "same_phone",
    "same_email",
    "same_address",
)

# Letters PostgreSQL's unaccent maps that are not a base letter plus combining marks.
_UNACCENT_EXTRA = str.maketrans(
    {
        "Æ": "AE", "æ": "ae", "Œ": "OE", "œ": "oe", "ß": "ss", "ẞ": "SS", "Ø": "O", "ø": "o",
        "Ð": "D", "ð": "d", "Đ": "D", "đ": "d", "Þ": "TH", "þ": "th", "Ł": "L", "ł": "l",
        "Ŀ": "L", "ŀ": "l", "Ħ": "H", "ħ": "h", "\u0131": "i", "Ŋ": "N", "ŋ": "n", "Ŧ": "T", "ŧ": "t",
        "Ɓ": "B", "ɓ": "b", "Ɗ": "D", "ɗ": "d", "Ɖ": "D", "ɖ": "d", "Ƙ": "K", "ƙ": "k",
        "Ɛ": "E", "ɛ": "e", "Ƴ": "Y", "ƴ": "y",
    }
)  # fmt: skip
_NAME_DROPPED = re.compile(r"[\s.'-]+")
_WORD_SEPARATORS = re.compile(r"[\s-]+")
_NOT_ALNUM = re.compile(r"[\W_]+")


@cache
def name_key(value: str) -> str:
    """The search key PostgreSQL's ``hims_name_key`` makes: accents removed (as ``unaccent``),
    lower-cased, spaces, dots, hyphens and apostrophes dropped."""
    decomposed = unicodedata.normalize("NFD", value.translate(_UNACCENT_EXTRA))
    unaccented = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NAME_DROPPED.sub("", unaccented.lower())


def national_id_key(value: str) -> str:
    """A national id as compared: letters and digits only, upper-case ("999-56-2023" = "999562023")."""
    return _NOT_ALNUM.sub("", value).upper()


def phone_digits(value: str | None) -> str:
    """The digits of a phone number."""
    return re.sub(r"\D", "", value or "")


def _words(value: str) -> frozenset[str]:
    return frozenset(k for k in (name_key(w) for w in _WORD_SEPARATORS.split(value)) if k)


def _address_key(value: str | None) -> str:
    return _NOT_ALNUM.sub("", name_key(value or ""))


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
    neighbouring letters each count one."""
    if a == b:
        return 0
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


@cache
def _nickname_table() -> dict[str, frozenset[str]]:
    table: dict[str, set[str]] = {}
    for source in (NICKNAMES, EXTRA_NICKNAMES):
        for name, nicks in source.items():
            for nick in nicks.split():
                a, b = name_key(name), name_key(nick)
                if a and b and a != b:
                    table.setdefault(a, set()).add(b)
                    table.setdefault(b, set()).add(a)
    return {k: frozenset(v) for k, v in table.items()}


def is_nickname(a: str, b: str) -> bool:
    """One given name is a listed nickname of the other (either direction; keys or raw names).

    Only direct pairs count: Bill-William and Bill-Robert, but not William-Robert.
    """
    return name_key(b) in _nickname_table().get(name_key(a), frozenset())


@dataclass(frozen=True)
class Person:
    """The fields duplicate detection looks at, raw as registered."""

    given_name: str
    family_name: str
    date_of_birth: date
    middle_name: str | None = None
    sex_at_birth: str | None = None
    phone: str | None = None
    email: str | None = None
    address_line: str | None = None
    postal_code: str | None = None
    national_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Match:
    """How alike two people are: total points, score in [0, 1] and the reasons."""

    points: float
    score: float
    reasons: tuple[str, ...] = field(default=())

    @property
    def is_duplicate(self) -> bool:
        """Whether registration should stop and show this candidate."""
        return self.score >= THRESHOLD


def _name_agreement(a: str, b: str, *, given: bool) -> str | None:
    """How two names agree: "same", "nickname", "typo", "part" or None."""
    ka, kb = name_key(a), name_key(b)
    if not ka or not kb:
        return None
    if ka == kb:
        return "same"
    if given and is_nickname(ka, kb):
        return "nickname"
    shorter = min(len(ka), len(kb))
    if shorter >= 4 and abs(len(ka) - len(kb)) <= 2:
        distance = edit_distance(ka, kb)
        if distance <= 1 or (distance == 2 and shorter >= 8):
            return "typo"
    wa, wb = _words(a), _words(b)
    if len(wa) != len(wb) and (wa <= wb or wb <= wa) and max(len(w) for w in wa & wb) >= 3:
        return "part"
    return None


_AGREEMENT_POINTS = {"same": NAME_SAME, "nickname": GIVEN_NICKNAME, "typo": NAME_TYPO, "part": NAME_PART}
_AGREEMENT_REASON = {"nickname": "nickname", "typo": "name_typo", "part": "name_part"}


def _digits(d: date) -> str:
    return d.strftime("%Y%m%d")


def _birth_date_agreement(a: date, b: date) -> str | None:
    if a == b:
        return "same"
    if a.year == b.year and a.month == b.day and a.day == b.month:
        return "swapped"
    da, db = _digits(a), _digits(b)
    differing = [i for i in range(8) if da[i] != db[i]]
    if len(differing) == 1:
        return "typo"
    if len(differing) == 2 and differing[1] == differing[0] + 1:
        i = differing[0]
        if da[i] == db[i + 1] and da[i + 1] == db[i]:
            return "typo"
    return None


def day_month_swapped(value: date) -> list[date]:
    """The birth date with day and month swapped, when that is another valid date."""
    if value.day == value.month or value.day > 12:
        return []
    return [value.replace(month=value.day, day=value.month)]


@lru_cache(maxsize=4096)
def birth_date_variants(value: date) -> tuple[date, ...]:
    """Dates `compare` accepts as this birth date mistyped (day/month swapped, one digit wrong,
    two neighbouring digits swapped), for the repository's blocking; ``value`` excluded (cached:
    about a hundred candidate dates parsed)."""
    digits = _digits(value)
    strings = set()
    for i in range(8):
        for d in "0123456789":
            strings.add(digits[:i] + d + digits[i + 1 :])
        if i < 7:
            strings.add(digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :])
    strings.add(f"{value.year:04d}{value.day:02d}{value.month:02d}")
    out = set()
    for s in strings:
        try:
            candidate = date(int(s[:4]), int(s[4:6]), int(s[6:]))
        except ValueError:
            continue
        if candidate != value and 1900 <= candidate.year <= 2100:
            out.add(candidate)
    return tuple(sorted(out))


def _same_phone(a: str | None, b: str | None) -> bool:
    da, db = phone_digits(a), phone_digits(b)
    shorter, longer = sorted((da, db), key=len)
    # "+1 555 794 3024" and "555-794-3024": the shorter is the longer without its country code.
    return len(shorter) >= 7 and longer.endswith(shorter)


def _same_address(new: Person, old: Person) -> bool:
    a, b = _address_key(new.address_line), _address_key(old.address_line)
    if not a or a != b:
        return False
    pa, pb = _address_key(new.postal_code), _address_key(old.postal_code)
    return not (pa and pb and pa != pb)


def _score(points: float) -> float:
    return 1.0 / (1.0 + math.exp(-(points - PIVOT_POINTS)))


def compare(new: Person, old: Person) -> Match:
    """Weigh every signal between a registration and an existing patient."""
    points = 0.0
    reasons: list[str] = []

    new_ids = {national_id_key(v) for v in new.national_ids} - {""}
    old_ids = {national_id_key(v) for v in old.national_ids} - {""}
    same_id = bool(new_ids & old_ids)
    if same_id:
        points += NATIONAL_ID_SAME
        reasons.append("same_national_id")
    elif new_ids and old_ids:
        points += NATIONAL_ID_DIFFERS

    contact: list[str] = []
    contact_points = 0.0
    if _same_phone(new.phone, old.phone):
        contact.append("same_phone")
        contact_points += PHONE_SAME
    if new.email and old.email and new.email.strip().lower() == old.email.strip().lower():
        contact.append("same_email")
        contact_points += EMAIL_SAME
    if _same_address(new, old):
        contact.append("same_address")
        contact_points += ADDRESS_SAME

    given = _name_agreement(new.given_name, old.given_name, given=True)
    family = _name_agreement(new.family_name, old.family_name, given=False)
    straight = (_AGREEMENT_POINTS[given] if given else GIVEN_DIFFERS) + (
        _AGREEMENT_POINTS[family] if family else FAMILY_DIFFERS
    )
    name_reasons = [_AGREEMENT_REASON[k] for k in (given, family) if k in _AGREEMENT_REASON]
    names_agree = given is not None and family is not None
    if given is not None and family is None and contact:
        straight = _AGREEMENT_POINTS[given] + FAMILY_CHANGED
        name_reasons.append("family_name_changed")
    swapped_given = _name_agreement(new.given_name, old.family_name, given=False)
    swapped_family = _name_agreement(new.family_name, old.given_name, given=False)
    if swapped_given and swapped_family and straight < 2 * SWAPPED_NAME:
        straight = 2 * SWAPPED_NAME
        name_reasons = ["swapped_names"]
        names_agree = True
    points += straight

    born = _birth_date_agreement(new.date_of_birth, old.date_of_birth)
    if born == "same":
        points += BIRTH_DATE_SAME
        reasons.append("same_birth_date_similar_name" if names_agree else "same_birth_date")
    elif born == "swapped":
        points += BIRTH_DATE_DAY_MONTH_SWAPPED
        reasons.append("birth_date_day_month_swapped")
    elif born == "typo":
        points += BIRTH_DATE_TYPO
        reasons.append("birth_date_typo")
    else:
        points += BIRTH_DATE_DIFFERS
    reasons.extend(name_reasons)
    # Twins share the birth date, the family name and every contact detail: there a shared phone,
    # e-mail or address says nothing about being the same person, so it adds no points.
    if not (born == "same" and family is not None):
        points += min(contact_points, CONTACT_CAP)
    reasons.extend(contact)

    # Boy-girl twins often get paired names (Daniel and Daniela, Aaron and Erin); the same given
    # name with a different sex is more likely a typing error in the sex.
    if {new.sex_at_birth, old.sex_at_birth} == {"female", "male"} and given != "same":
        points += SEX_DIFFERS
    if new.middle_name and old.middle_name:
        a, b = name_key(new.middle_name), name_key(old.middle_name)
        if a and b and a[0] != b[0]:
            points += MIDDLE_INITIAL_DIFFERS

    # A national id names one person: a second record holding it is either the same person or a
    # typing error the registrar must resolve, so it is always shown.
    if same_id:
        points = max(points, PIVOT_POINTS)
    return Match(points=round(points, 2), score=round(_score(points), 3), reasons=tuple(reasons))


K = TypeVar("K")


def duplicates(new: Person, candidates: Iterable[tuple[K, Person]]) -> list[tuple[K, Match]]:
    """The candidates that are duplicates of ``new``, best first (keys are the caller's)."""
    found = [(key, m) for key, person in candidates if (m := compare(new, person)).is_duplicate]
    found.sort(key=lambda pair: -pair[1].points)
    return found
