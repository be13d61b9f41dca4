"""JSON Patch (RFC 6902) for FHIR PATCH with ``Content-Type: application/json-patch+json``."""

from __future__ import annotations

import copy
from typing import Any

from hims.core.errors import BadRequest, HimsError


class PatchFailed(HimsError):
    """A patch that cannot be applied (RFC 6902: the whole patch fails)."""

    status, code, title = 422, "patch_failed", "Patch failed"


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise BadRequest(f"Invalid JSON pointer {pointer!r}.", code="invalid_patch")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(container: list[Any], segment: str, *, for_add: bool) -> int:
    if for_add and segment == "-":
        return len(container)
    if not segment.isdigit() or (len(segment) > 1 and segment.startswith("0")):
        raise PatchFailed(f"Array index {segment!r} is not a number.")
    index = int(segment)
    if index > len(container) or (not for_add and index == len(container)):
        raise PatchFailed(f"Array index {index} is out of range.")
    return index


def _parent(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for segment in tokens[:-1]:
        if isinstance(node, dict):
            if segment not in node:
                raise PatchFailed(f"Path segment {segment!r} does not exist.")
            node = node[segment]
        elif isinstance(node, list):
            node = node[_index(node, segment, for_add=False)]
        else:
            raise PatchFailed(f"Path segment {segment!r} does not exist.")
    return node


def _get(doc: Any, pointer: str) -> Any:
    tokens = _tokens(pointer)
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchFailed(f"{pointer} does not exist.")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, for_add=False)]
    raise PatchFailed(f"{pointer} does not exist.")


def _add(doc: Any, pointer: str, value: Any) -> Any:
    tokens = _tokens(pointer)
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, for_add=True), value)
    else:
        raise PatchFailed(f"Cannot add at {pointer}.")
    return doc


def _remove(doc: Any, pointer: str) -> Any:
    tokens = _tokens(pointer)
    if not tokens:
        raise PatchFailed("Cannot remove the whole document.")
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchFailed(f"{pointer} does not exist.")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(parent, last, for_add=False)]
    else:
        raise PatchFailed(f"{pointer} does not exist.")
    return doc


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def apply(document: dict[str, Any], operations: Any) -> Any:
    """The patched copy of ``document``; raises PatchFailed (nothing applied) or BadRequest."""
    if not isinstance(operations, list):
        raise BadRequest("A JSON Patch body is an array of operations.", code="invalid_patch")
    doc: Any = copy.deepcopy(document)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise BadRequest("Each patch operation needs `op` and `path`.", code="invalid_patch")
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            doc = _add(_remove(doc, path), path, copy.deepcopy(op.get("value"))) if path else op.get("value")
        elif kind in ("move", "copy"):
            source = op.get("from")
            if not isinstance(source, str):
                raise BadRequest(f"`{kind}` needs `from`.", code="invalid_patch")
            value = copy.deepcopy(_get(doc, source))
            if kind == "move":
                doc = _remove(doc, source)
            doc = _add(doc, path, value)
        elif kind == "test":
            if not _equal(_get(doc, path), op.get("value")):
                raise PatchFailed(f"Test failed at {path}.")
        else:
            raise BadRequest(f"Unknown patch op {kind!r}.", code="invalid_patch")
    return doc
