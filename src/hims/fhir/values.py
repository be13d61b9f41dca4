"""FHIR primitive parsing shared by extraction and search: dates as ranges, strings normalised."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta

from hims.core.errors import BadRequest

_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(-(?P<m>\d{2})(-(?P<d>\d{2})"
    r"(T(?P<H>\d{2}):(?P<M>\d{2})(:(?P<S>\d{2})(?P<f>\.\d+)?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
MAX_MICRO = timedelta(microseconds=1)


class InvalidDate(ValueError):
    """A value that is not a FHIR date, dateTime or instant."""


def date_range(value: str) -> tuple[datetime, datetime]:
    """The inclusive UTC range [low, high] a (possibly partial) FHIR date/dateTime covers."""
    match = _DATE_RE.match(value.strip())
    if not match:
        raise InvalidDate(value)
    g = match.groupdict()
    try:
        year = int(g["y"])
        if g["m"] is None:
            low = datetime(year, 1, 1, tzinfo=UTC)
            return low, datetime(year + 1, 1, 1, tzinfo=UTC) - MAX_MICRO
        month = int(g["m"])
        if g["d"] is None:
            low = datetime(year, month, 1, tzinfo=UTC)
            nxt = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
            return low, nxt - MAX_MICRO
        day = int(g["d"])
        if g["H"] is None:
            low = datetime(year, month, day, tzinfo=UTC)
            return low, low + timedelta(days=1) - MAX_MICRO
        tz = g["tz"]
        offset = timedelta(0)
        if tz and tz != "Z":
            sign = 1 if tz[0] == "+" else -1
            offset = sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
        base = datetime(year, month, day, int(g["H"]), int(g["M"]), tzinfo=UTC) - offset
        if g["S"] is None:
            return base, base + timedelta(minutes=1) - MAX_MICRO
        second = base + timedelta(seconds=int(g["S"]))
        if g["f"]:
            micro = int((g["f"][1:] + "000000")[:6])
            exact = second + timedelta(microseconds=micro)
            return exact, exact
        return second, second + timedelta(seconds=1) - MAX_MICRO
    except ValueError as exc:
        raise InvalidDate(value) from exc


def parse_search_date(value: str, param: str) -> tuple[datetime, datetime]:
    """`date_range` for a search parameter value; a bad value is a 400 naming the parameter."""
    try:
        return date_range(value)
    except InvalidDate:
        raise BadRequest(
            f"Invalid date {value!r} for search parameter {param!r} (use YYYY[-MM[-DD[Thh:mm[:ss][Z]]]]).",
            code="invalid_date",
        ) from None


def normalise(text: str) -> str:
    """Lower case without accents: how string search compares (R4: case and accent insensitive)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
