"""FHIR search: query parameters to one SQL statement over the store and its index tables."""

# SQL is assembled from fixed fragments; every value is a bound parameter ($n), never spliced.
# ruff: noqa: S608

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, urlencode

import asyncpg
import orjson

from hims.core.errors import BadRequest
from hims.fhir.extract import split_reference
from hims.fhir.registry import RESOURCE_TYPES, RESULT_PARAMS, TYPES, SearchParam, search_param
from hims.fhir.values import normalise, parse_search_date

__all__ = ["SearchRequest", "execute", "find_ids", "parse", "parse_search_date"]

DEFAULT_COUNT = 20
MAX_COUNT = 1000
#: Deepest chain (``subject:Patient.organization.name``) or ``_has`` nesting accepted.
MAX_CHAIN = 3
DATE_PREFIXES = ("eq", "ne", "lt", "gt", "le", "ge", "sa", "eb", "ap")
_INDEX_TABLE = {
    "string": "fhir_idx_string",
    "token": "fhir_idx_token",
    "date": "fhir_idx_date",
    "reference": "fhir_idx_reference",
    "quantity": "fhir_idx_quantity",
    "uri": "fhir_idx_token",  # the whole URI as the code, no system
    "number": "fhir_idx_quantity",  # the value, no system or unit
}


@dataclass
class SqlBuilder:
    """Positional arguments for asyncpg ($1, $2...)."""

    args: list[Any] = field(default_factory=list)
    aliases: int = 0

    def alias(self, stem: str) -> str:
        """A table alias no other part of this query uses (chains and _has nest subqueries)."""
        self.aliases += 1
        return f"{stem}{self.aliases}"

    def arg(self, value: Any) -> str:
        """Add ``value`` and return its placeholder, typed so PostgreSQL never has to guess."""
        self.args.append(value)
        return f"${len(self.args)}{_cast(value)}"


def _cast(value: Any) -> str:
    if isinstance(value, bool):
        return "::boolean"
    if isinstance(value, datetime):
        return "::timestamptz"
    if isinstance(value, int):
        return "::bigint"
    if isinstance(value, Decimal):
        return "::numeric"
    if isinstance(value, list):
        return "::text[]"
    return "::text"


@dataclass
class SearchRequest:
    """A parsed search: filters as SQL, result controls, and warnings for ignored parameters."""

    resource_type: str
    where: list[str]
    builder: SqlBuilder
    count: int = DEFAULT_COUNT
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (param, descending)
    includes: list[tuple[str, str, str | None]] = field(default_factory=list)
    revincludes: list[tuple[str, str, str | None]] = field(default_factory=list)
    #: ``_include:iterate`` / ``_revinclude:iterate``: applied to included resources too, repeatedly.
    iterate_includes: list[tuple[str, str, str | None]] = field(default_factory=list)
    iterate_revincludes: list[tuple[str, str, str | None]] = field(default_factory=list)
    elements: list[str] | None = None
    summary: str | None = None
    total: str | None = None
    cursor: str | None = None
    warnings: list[str] = field(default_factory=list)
    echo: list[tuple[str, str]] = field(default_factory=list)  # params to repeat in links


def parse(resource_type: str, params: list[tuple[str, str]], *, strict: bool = False) -> SearchRequest:
    """Turn (name, value) pairs into a SearchRequest; unknown params warn (or 400 when strict)."""
    builder = SqlBuilder()
    request = SearchRequest(
        resource_type, ["r.resource_type = " + builder.arg(resource_type), "NOT r.deleted"], builder
    )
    for name, value in params:
        base = name.split(":", 1)[0].split(".", 1)[0]
        if base in RESULT_PARAMS:
            _result_param(request, name, value)
            continue
        if base in ("_format", "_pretty"):
            continue
        condition = condition_for(resource_type, name, value, builder, request)
        if condition is None:
            message = f"Unknown or unsupported search parameter {name!r} for {resource_type}; it was ignored."
            if strict:
                raise BadRequest(message, code="unknown_search_parameter")
            request.warnings.append(message)
            continue
        request.where.append(condition)
        request.echo.append((name, value))
    return request


def _result_param(request: SearchRequest, name: str, value: str) -> None:
    if name == "_count":
        try:
            request.count = max(0, min(int(value), MAX_COUNT))
        except ValueError:
            raise BadRequest(f"_count must be an integer, got {value!r}.", code="invalid_count") from None
    elif name == "_sort":
        for key in value.split(","):
            key = key.strip()
            if not key:
                continue
            desc = key.startswith("-")
            key = key.lstrip("-")
            param = search_param(request.resource_type, key)
            if param is None or param.type not in ("string", "date", "token"):
                raise BadRequest(f"Cannot sort {request.resource_type} by {key!r}.", code="invalid_sort")
            request.sort.append((key, desc))
    elif name.split(":")[0] in ("_include", "_revinclude"):
        kind, _, modifier = name.partition(":")
        if modifier not in ("", "iterate", "recurse"):
            raise BadRequest(f"Unknown modifier on {kind}: {modifier!r}.", code="invalid_include")
        parts = value.split(":")
        if len(parts) < 2 or parts[0] not in RESOURCE_TYPES or search_param(parts[0], parts[1]) is None:
            raise BadRequest(
                f"Invalid {name} value {value!r}; use Type:param[:TargetType].", code="invalid_include"
            )
        named = [p for p in parts[:3] if p in TYPES and TYPES[p].source is not None]
        if named:
            raise BadRequest(f"{named[0]} cannot be included: search it directly.", code="invalid_include")
        target = parts[2] if len(parts) > 2 and parts[2] != "iterate" else None
        if modifier:  # `recurse` is the R3 name of `iterate`
            lists = (request.iterate_includes, request.iterate_revincludes)
        else:
            lists = (request.includes, request.revincludes)
        (lists[0] if kind == "_include" else lists[1]).append((parts[0], parts[1], target))
    elif name == "_elements":
        request.elements = [e.strip() for e in value.split(",") if e.strip()]
    elif name == "_summary":
        request.summary = value
    elif name == "_total":
        request.total = value
    elif name == "_cursor":
        request.cursor = value
    if name not in ("_cursor",):
        request.echo.append((name, value))


def condition_for(
    resource_type: str,
    name: str,
    value: str,
    b: SqlBuilder,
    request: SearchRequest | None = None,
    alias: str = "r",
) -> str | None:
    """SQL condition for one parameter occurrence (values OR'd), or None when unknown."""
    if name.startswith("_has:"):
        return _has(resource_type, name, value, b, alias)
    chain = None
    head = name
    if "." in name:
        head, chain = name.split(".", 1)
    pname, _, modifier = head.partition(":")
    param = search_param(resource_type, pname)
    if param is None:
        return None
    if modifier == "missing":
        missing = value.lower() == "true"
        if param.type not in _INDEX_TABLE:
            return None
        table = _INDEX_TABLE[param.type]
        sub = f"SELECT 1 FROM {table} m WHERE m.rid = {alias}.rid AND m.param = {b.arg(pname)}"
        return f"{'NOT ' if missing else ''}EXISTS ({sub})"
    values = _split_values(value)
    if pname == "_id":
        return f"{alias}.id = ANY({b.arg(values)})"
    if pname == "_lastUpdated":
        return (
            "("
            + " OR ".join(
                _date_condition(v, pname, f"{alias}.last_updated", f"{alias}.last_updated", b) for v in values
            )
            + ")"
        )
    if chain is not None:
        return _chain(resource_type, param, modifier, chain, value, b, alias)
    index_table = _INDEX_TABLE.get(param.type)
    if index_table is None:
        return None
    ors: list[str] = []
    for item in values:
        ors.append(_value_condition(param, modifier, item, b))
    negate = modifier == "not" and param.type == "token"
    sub = (
        f"SELECT i.rid FROM {index_table} i "
        f"WHERE i.rtype = {b.arg(resource_type)} AND i.param = {b.arg(pname)} "
        f"AND ({' OR '.join(ors)})"
    )
    return f"{alias}.rid {'NOT ' if negate else ''}IN ({sub})"


def _split_values(value: str) -> list[str]:
    out, current, escaped = [], "", False
    for ch in value:
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            out.append(current)
            current = ""
        else:
            current += ch
    out.append(current)
    return out


def _value_condition(param: SearchParam, modifier: str, value: str, b: SqlBuilder) -> str:
    if param.type == "string":
        if modifier == "exact":
            return f"i.raw = {b.arg(value)}"
        norm = normalise(value)
        if modifier == "contains":
            return f"i.value LIKE {b.arg('%' + _like_escape(norm) + '%')}"
        if modifier:
            raise BadRequest(
                f"Modifier :{modifier} is not supported on string parameters.", code="unsupported_modifier"
            )
        if not norm:
            return "TRUE"
        if ord(norm[-1]) >= 0x10FFFF:
            return f"i.value LIKE {b.arg(_like_escape(norm) + '%')}"
        upper = norm[:-1] + chr(ord(norm[-1]) + 1)
        return f"(i.value ~>=~ {b.arg(norm)} AND i.value ~<~ {b.arg(upper)})"
    if param.type == "token":
        if modifier not in ("", "not"):
            raise BadRequest(
                f"Modifier :{modifier} is not supported on token parameters.", code="unsupported_modifier"
            )
        if "|" in value:
            system, code = value.split("|", 1)
            if system == "":
                return f"(i.system IS NULL AND i.code = {b.arg(code)})"
            if code == "":
                return f"i.system = {b.arg(system)}"
            return f"(i.system = {b.arg(system)} AND i.code = {b.arg(code)})"
        return f"i.code = {b.arg(value)}"
    if param.type == "date":
        if modifier:
            raise BadRequest(
                f"Modifier :{modifier} is not supported on date parameters.", code="unsupported_modifier"
            )
        return _date_condition(value, param.name, "i.low", "i.high", b)
    if param.type == "reference":
        return _reference_condition(param, modifier, value, b)
    if param.type == "quantity":
        return _quantity_condition(value, param.name, b)
    if param.type == "uri":
        return _uri_condition(modifier, value, b)
    if param.type == "number":
        if modifier:
            raise BadRequest(
                f"Modifier :{modifier} is not supported on number parameters.", code="unsupported_modifier"
            )
        if "|" in value:
            raise BadRequest(f"Invalid number {value!r} for {param.name!r}.", code="invalid_number")
        return _numeric_condition(value, param.name, b)
    raise BadRequest(f"Parameter {param.name!r} cannot be searched.", code="unsupported_parameter")


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in DATE_PREFIXES and not value[:2].isdigit():
        return value[:2], value[2:]
    return "eq", value


def _date_condition(value: str, name: str, low_col: str, high_col: str, b: SqlBuilder) -> str:
    prefix, text = _prefix(value)
    low, high = parse_search_date(text, name)
    if prefix in ("gt", "le", "sa"):
        hi = b.arg(high)
    elif prefix in ("lt", "ge", "eb"):
        lo = b.arg(low)
    elif prefix != "ap":
        lo, hi = b.arg(low), b.arg(high)
    if prefix == "eq":
        # `low <= hi` follows from the other two (low <= high): it bounds the (type, param, low)
        # index scan above, which otherwise read every later date and filtered on high.
        return f"({low_col} >= {lo} AND {high_col} <= {hi} AND {low_col} <= {hi})"
    if prefix == "ne":
        return f"NOT ({low_col} >= {lo} AND {high_col} <= {hi})"
    if prefix == "gt":
        return f"{high_col} > {hi}"
    if prefix == "lt":
        return f"{low_col} < {lo}"
    if prefix == "ge":
        return f"{high_col} >= {lo}"
    if prefix == "le":
        return f"{low_col} <= {hi}"
    if prefix == "sa":
        return f"{low_col} > {hi}"
    if prefix == "eb":
        return f"{high_col} < {lo}"
    # ap: overlap with the range widened by 10% of its distance from now (at least a day).
    now = datetime.now(UTC)
    slack = max(abs(now - low) / 10, timedelta(days=1))
    return f"({low_col} <= {b.arg(high + slack)} AND {high_col} >= {b.arg(low - slack)})"


def _reference_condition(param: SearchParam, modifier: str, value: str, b: SqlBuilder) -> str:
    if modifier and modifier not in RESOURCE_TYPES:
        raise BadRequest(
            f"Modifier :{modifier} is not supported on reference parameters.", code="unsupported_modifier"
        )
    target = split_reference(value)
    if target:
        return f"(i.target_type = {b.arg(target[0])} AND i.target_id = {b.arg(target[1])})"
    if "/" in value:
        raise BadRequest(f"Invalid reference value {value!r} for {param.name!r}.", code="invalid_reference")
    if modifier:
        return f"(i.target_type = {b.arg(modifier)} AND i.target_id = {b.arg(value)})"
    return f"i.target_id = {b.arg(value)}"


def _chain(
    resource_type: str, param: SearchParam, modifier: str, chain: str, value: str, b: SqlBuilder, alias: str
) -> str:
    if param.type != "reference":
        raise BadRequest(f"Only reference parameters can be chained ({param.name!r}).", code="invalid_chain")
    target_type = modifier or (param.targets[0] if len(param.targets) == 1 else "")
    if target_type not in RESOURCE_TYPES:
        raise BadRequest(
            f"Say which type {param.name!r} points at, e.g. {param.name}:Patient.{chain}=...",
            code="invalid_chain",
        )
    if chain.count(".") >= MAX_CHAIN:
        raise BadRequest(f"Chains of more than {MAX_CHAIN} levels are not supported.", code="invalid_chain")
    t, x = b.alias("t"), b.alias("x")
    inner = condition_for(target_type, chain, value, b, alias=t)
    if inner is None:
        raise BadRequest(
            f"Unknown parameter {chain!r} on {target_type} in chain.", code="unknown_search_parameter"
        )
    return (
        f"{alias}.rid IN (SELECT {x}.rid FROM fhir_idx_reference {x} JOIN fhir_resources {t} "
        f"ON {t}.resource_type = {x}.target_type AND {t}.id = {x}.target_id "
        f"WHERE {x}.rtype = {b.arg(resource_type)} AND {x}.param = {b.arg(param.name)} "
        f"AND {x}.target_type = {b.arg(target_type)} AND NOT {t}.deleted AND {inner})"
    )


def _has(resource_type: str, name: str, value: str, b: SqlBuilder, alias: str) -> str:
    """Reverse chaining: ``_has:Observation:patient:code=1234-5`` matches the resources that an
    Observation with that code points at through its ``patient`` parameter (nestable)."""
    parts = name.split(":", 3)
    if len(parts) != 4 or parts[1] not in RESOURCE_TYPES or not parts[3]:
        raise BadRequest(
            f"Invalid {name!r}; use _has:Type:reference-param:search-param=value.", code="invalid_has"
        )
    _, source, ref_param, rest = parts
    param = search_param(source, ref_param)
    if param is None or param.type != "reference":
        raise BadRequest(f"{ref_param!r} is not a reference parameter of {source}.", code="invalid_has")
    if rest.startswith("_has:") and name.count("_has:") > MAX_CHAIN:
        raise BadRequest(f"_has may be nested at most {MAX_CHAIN} levels.", code="invalid_has")
    h, x = b.alias("h"), b.alias("x")
    inner = condition_for(source, rest, value, b, alias=h)
    if inner is None:
        raise BadRequest(f"Unknown parameter {rest!r} on {source} in _has.", code="unknown_search_parameter")
    return (
        f"EXISTS (SELECT 1 FROM fhir_idx_reference {x} JOIN fhir_resources {h} ON {h}.rid = {x}.rid "
        f"WHERE {x}.target_id = {alias}.id AND {x}.target_type = {b.arg(resource_type)} "
        f"AND {x}.rtype = {b.arg(source)} AND {x}.param = {b.arg(ref_param)} AND NOT {h}.deleted AND {inner})"
    )


def _uri_condition(modifier: str, value: str, b: SqlBuilder) -> str:
    """A uri parameter: the whole URI, or with ``:below`` the URIs under it (it is their prefix) and
    with ``:above`` the URIs it is under (they are its prefix)."""
    if modifier == "":
        return f"i.code = {b.arg(value)}"
    if modifier == "below":
        return f"starts_with(i.code, {b.arg(value)})"
    if modifier == "above":
        return f"starts_with({b.arg(value)}, i.code)"
    raise BadRequest(f"Modifier :{modifier} is not supported on uri parameters.", code="unsupported_modifier")


def _numeric_condition(text: str, name: str, b: SqlBuilder) -> str:
    """``[prefix]number`` against ``i.value``: without a prefix (or with ``ne``) a match is within
    the precision the number was written with (100 means [99.5, 100.5)); ``ap`` is ±10 %."""
    prefix, number_text = _prefix(text)
    try:
        number = Decimal(number_text)
    except InvalidOperation:
        raise BadRequest(f"Invalid number {number_text!r} for {name!r}.", code="invalid_number") from None
    if not number.is_finite():
        raise BadRequest(f"Invalid number {number_text!r} for {name!r}.", code="invalid_number")
    # A finite number's exponent is an int: the precision it was written with.
    half = Decimal(5).scaleb(int(number.as_tuple().exponent) - 1)
    ops = {"gt": ">", "lt": "<", "ge": ">=", "le": "<=", "sa": ">", "eb": "<"}
    if prefix in ops:
        return f"i.value {ops[prefix]} {b.arg(number)}"
    if prefix == "ne":
        return f"NOT (i.value >= {b.arg(number - half)} AND i.value < {b.arg(number + half)})"
    if prefix == "ap":
        slack = abs(number) / 10
        return f"i.value BETWEEN {b.arg(number - slack)} AND {b.arg(number + slack)}"
    return f"(i.value >= {b.arg(number - half)} AND i.value < {b.arg(number + half)})"


def _quantity_condition(value: str, name: str, b: SqlBuilder) -> str:
    parts = value.split("|")
    clauses = [_numeric_condition(parts[0], name, b)]
    if len(parts) >= 2 and parts[1]:
        clauses.append(f"i.system = {b.arg(parts[1])}")
    if len(parts) >= 3 and parts[2]:
        clauses.append(f"i.code = {b.arg(parts[2])}")
    return "(" + " AND ".join(clauses) + ")"


# ---------------------------------------------------------------- execution


def _sort_exprs(request: SearchRequest, b: SqlBuilder) -> list[tuple[str, bool]]:
    """(SQL expression, descending) per ``_sort`` key; never NULL, so keyset paging can compare."""
    out: list[tuple[str, bool]] = []
    for key, desc in request.sort:
        if key == "_id":
            out.append(("r.id", desc))
            continue
        if key == "_lastUpdated":
            out.append(("r.last_updated", desc))
            continue
        param = search_param(request.resource_type, key)
        assert param is not None
        if param.type == "string":
            expr = (
                f"coalesce((SELECT min(s.value) FROM fhir_idx_string s "
                f"WHERE s.rid = r.rid AND s.param = {b.arg(key)}), '')"
            )
        elif param.type == "token":
            expr = (
                f"coalesce((SELECT min(s.code) FROM fhir_idx_token s "
                f"WHERE s.rid = r.rid AND s.param = {b.arg(key)}), '')"
            )
        else:
            expr = (
                f"coalesce((SELECT min(s.low) FROM fhir_idx_date s WHERE s.rid = r.rid "
                f"AND s.param = {b.arg(key)}), '-infinity'::timestamptz)"
            )
        out.append((expr, desc))
    return out


def _is_time(expr: str) -> bool:
    return expr == "r.last_updated" or "timestamptz" in expr


def _after(keys: list[tuple[str, bool]], values: list[Any], b: SqlBuilder) -> str:
    """Rows after ``values`` in the order of ``keys`` (lexicographic, each key its own direction)."""
    ors = []
    for n, (expr, desc) in enumerate(keys):
        equal = [f"{keys[i][0]} = {b.arg(values[i])}" for i in range(n)]
        ors.append("(" + " AND ".join([*equal, f"{expr} {'<' if desc else '>'} {b.arg(values[n])}"]) + ")")
    return "(" + " OR ".join(ors) + ")"


def encode_cursor(values: list[Any]) -> str:
    """An opaque page cursor."""
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(text: str, *converters: Callable[[Any], Any]) -> list[Any]:
    """The values in a cursor, each passed through its converter; a malformed cursor is a 400."""
    try:
        data = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(data, list) or len(data) < len(converters):
            raise ValueError("bad cursor")
        return [convert(value) for convert, value in zip(converters, data, strict=False)]
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise BadRequest("Invalid paging cursor.", code="invalid_cursor") from None


@dataclass
class Page:
    """One page of matches: rows and the cursor of the next page (None at the end)."""

    rows: list[asyncpg.Record]
    next_cursor: str | None
    total: int | None


async def execute(conn: asyncpg.Connection, request: SearchRequest) -> Page:
    """Run the search for one page (keyset paging: stable under concurrent inserts and updates)."""
    b = request.builder
    where = list(request.where)
    total = None
    if request.summary == "count" or request.total == "accurate":
        total = await conn.fetchval(
            f"SELECT count(*) FROM fhir_resources r WHERE {' AND '.join(where)}", *b.args
        )
    if request.summary == "count" or request.count == 0:
        return Page([], None, total)
    sort = _sort_exprs(request, b)
    keys = [*sort, ("r.rid", sort[0][1] if sort else False)]
    if request.cursor:
        converters = [datetime.fromisoformat if _is_time(e) else str for e, _ in sort]
        where.append(_after(keys, decode_cursor(request.cursor, *converters, int), b))
    select_keys = "".join(f", {e} AS sort_key{n}" for n, (e, _) in enumerate(sort))
    order = ", ".join(f"{e} {'DESC' if d else 'ASC'}" for e, d in keys)
    limit = b.arg(request.count + 1)
    sql = (
        f"SELECT r.rid, r.resource_type, r.id, r.patient_ref, r.last_updated, r.resource::text AS resource"
        f"{select_keys} FROM fhir_resources r WHERE {' AND '.join(where)} "
        f"ORDER BY {order} LIMIT {limit}"
    )
    try:
        rows = list(await conn.fetch(sql, *b.args))
    except (asyncpg.DataError, asyncpg.exceptions.ProgramLimitExceededError) as exc:
        raise BadRequest(
            f"A search value is out of range: {type(exc).__name__}.", code="invalid_search_value"
        ) from None
    next_cursor = None
    if len(rows) > request.count:
        rows = rows[: request.count]
        last = rows[-1]
        values = [last[f"sort_key{n}"] for n in range(len(sort))]
        next_cursor = encode_cursor(
            [v.isoformat() if isinstance(v, datetime) else v for v in values] + [last["rid"]]
        )
    return Page(rows, next_cursor, total)


def criteria_key(resource_type: str, query: str) -> str:
    """One spelling of (type, conditional criteria): parameters in sorted order."""
    params = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    return f"{resource_type}?{urlencode(sorted(params))}"


async def lock_criteria(conn: asyncpg.Connection, keys: list[str]) -> None:
    """Transaction-scoped advisory locks on these criteria, taken in sorted order so that two
    transactions locking overlapping sets cannot deadlock (a lock already held is taken again)."""
    if keys:  # one round trip; the subquery fixes the order the locks are taken in
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM "
            "(SELECT k FROM unnest($1::text[]) WITH ORDINALITY AS t(k, n) ORDER BY n) AS ordered",
            sorted(set(keys)),
        )


async def find_ids(
    conn: asyncpg.Connection, resource_type: str, query: str, *, limit: int, lock: bool = False
) -> list[str]:
    """Ids matching a conditional query string (If-None-Exist, conditional update/reference).

    ``lock`` (for a conditional create or update, which may create what it did not find): first
    take a transaction-scoped advisory lock on (type, criteria), so concurrent requests with the
    same criteria run one after the other and the second finds what the first created.
    """
    params = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    if not params:
        raise BadRequest("A conditional operation needs search criteria.", code="missing_criteria")
    if lock:
        await lock_criteria(conn, [criteria_key(resource_type, query)])
    request = parse(resource_type, params, strict=True)
    request.count = limit
    page = await execute(conn, request)
    return [row["id"] for row in page.rows]
