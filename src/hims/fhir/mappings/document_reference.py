"""DocumentReference ↔ ``documents`` row.

``content[0].attachment`` carries contentType, size, the file name (``title``) and creation
time. FHIR's ``attachment.hash`` is a base64 SHA-1; we only store (and verify) a SHA-256, so it
travels hex-encoded in the ``attachment-sha256`` extension on the attachment and ``hash`` is left
out rather than filled with a digest we do not have. The document title is ``description``; a
soft-deleted document is ``entered-in-error`` with the ``deleted-at`` extension. The storage key
is internal and travels as an identifier in our system so the row can be rebuilt.
"""

from __future__ import annotations

from typing import Any

from hims.fhir.mappings._common import (
    HIMS,
    drop_empty,
    ext_url,
    ext_uuid,
    ext_value,
    extension,
    extensions,
    instant,
    parse_instant,
    ref,
    ref_id,
    unmapped,
    uuid_extension,
    with_extra,
)

STORAGE_KEY_SYSTEM = f"{HIMS}/sid/document-storage-key"
MODELLED = frozenset({"status", "subject", "description", "content", "extension", "identifier"})


def to_row(resource: dict[str, Any]) -> dict[str, Any]:
    """Column values for ``documents`` (the first content's attachment)."""
    attachment = ((resource.get("content") or [{}])[0]).get("attachment") or {}
    sha256 = next(
        (
            e.get("valueString")
            for e in attachment.get("extension") or []
            if e.get("url") == ext_url("attachment-sha256")
        ),
        None,
    )
    encounters = (resource.get("context") or {}).get("encounter") or []
    deleted_at = parse_instant(ext_value(resource, "deleted-at"))
    return {
        "patient_id": ref_id(resource.get("subject"), "Patient"),
        "consultation_id": next((i for e in encounters if (i := ref_id(e, "Encounter"))), None),
        "title": resource.get("description"),
        "filename": attachment.get("title") or "",
        "content_type": attachment.get("contentType") or "application/octet-stream",
        "size_bytes": attachment.get("size"),
        "sha256": sha256,
        "storage_key": next(
            (
                i.get("value")
                for i in resource.get("identifier") or []
                if i.get("system") == STORAGE_KEY_SYSTEM
            ),
            None,
        ),
        "uploaded_by": ext_uuid(resource, "uploaded-by"),
        "deleted_at": deleted_at,
    }


def to_resource(row: dict[str, Any], *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A FHIR DocumentReference from a ``documents`` row."""
    attachment = drop_empty(
        {
            "extension": extensions(extension("attachment-sha256", valueString=row.get("sha256"))),
            "contentType": row.get("content_type"),
            "size": row.get("size_bytes"),
            "title": row.get("filename") or None,
            "creation": instant(row.get("created_at")),
        }
    )
    resource = drop_empty(
        {
            "resourceType": "DocumentReference",
            "id": str(row["id"]) if row.get("id") else None,
            "extension": extensions(
                uuid_extension("uploaded-by", row.get("uploaded_by")),
                extension("deleted-at", valueDateTime=instant(row.get("deleted_at"))),
            ),
            "identifier": [{"system": STORAGE_KEY_SYSTEM, "value": row["storage_key"]}]
            if row.get("storage_key")
            else [],
            "status": "entered-in-error" if row.get("deleted_at") else "current",
            "subject": ref("Patient", row.get("patient_id")),
            "date": instant(row.get("created_at")),
            "description": row.get("title"),
            "content": [{"attachment": attachment}],
            "context": {"encounter": [ref("Encounter", row["consultation_id"])]}
            if row.get("consultation_id")
            else None,
        }
    )
    kept = dict(extra or {})
    original = kept.pop("content", None)
    if original:
        # The first content's other parts (format, url, language, a SHA-1 hash...) come back.
        first = dict(original[0])
        first["attachment"] = {**(first.get("attachment") or {}), **attachment}
        resource["content"] = [first, *original[1:]]
    return with_extra(resource, kept)


def extra(resource: dict[str, Any]) -> dict[str, Any]:
    """The elements of a DocumentReference this mapping does not model (kept next to the row).

    Identifiers other than our storage key are kept too.
    """
    out = unmapped(resource, MODELLED, {"subject": "Patient"})
    if resource.get("content"):
        out["content"] = resource["content"]
    others = [i for i in resource.get("identifier") or [] if i.get("system") != STORAGE_KEY_SYSTEM]
    if others:
        out["identifier"] = others
    return out
