"""What sets the server's own audit log entries apart from the AuditEvents clients store.

Two kinds of AuditEvent live under `[base]/AuditEvent` (https://hl7.org/fhir/R4/auditevent.html):

- the server's entries: one per request, rendered from the append-only log (audit/fhir.py), read-only;
  their ids are the log rows' keys, so made of digits only, and each carries `SERVER_TAG` in
  `meta.tag` (https://hl7.org/fhir/R4/resource.html#tag) and names this server as `source.observer`;
- client AuditEvents, which applications record about their own activity (IHE BALP,
  https://profiles.ihe.net/ITI/BALP/), stored as ordinary resources under the access rules.

The two never share an id: an id of digits only is the server's, and no client write may use one
(`refuse_server_id`, 405 whether or not such an entry exists, so the refusal tells nothing), and no
client AuditEvent may carry the server's tag (`refuse_server_tag`), so `_tag` tells the two apart.
The storage layer (resources/services.py) calls both on every write.
"""

from __future__ import annotations

from resources.outcomes import FhirError, bad_request, error

RESOURCE_TYPE = "AuditEvent"
TAG_SYSTEM = "urn:fhirplatform:audit"
TAG_CODE = "server-log"
SERVER_TAG = {
    "system": TAG_SYSTEM,
    "code": TAG_CODE,
    "display": "Entry of the server's own audit log (read-only)",
}


def is_server_id(fhir_id: str) -> bool:
    """Whether `fhir_id` is in the id space of the server's log entries (digits only)."""
    return fhir_id.isascii() and fhir_id.isdigit()


def read_only(fhir_id: str, method: str, *, allow: str = "GET, HEAD") -> FhirError:
    """The refusal of a write aimed at the server's entry `fhir_id` (405 with `Allow`)."""
    failure = error(
        405,
        "not-supported",
        f"{method} is not supported on AuditEvent/{fhir_id}: ids made of digits name entries of the "
        "server's own audit log, which are read-only; a client AuditEvent gets a server-assigned id "
        "(POST) or an id with at least one letter, '-' or '.' (PUT)",
    )
    failure.headers["Allow"] = allow
    return failure


def refuse_server_id(resource_type: str, fhir_id: str, method: str = "Writing") -> None:
    """Refuse an update, patch or delete of `AuditEvent/<digits>`, existing or not."""
    if resource_type == RESOURCE_TYPE and is_server_id(fhir_id):
        raise read_only(fhir_id, method)


def refuse_server_tag(resource_type: str, body: dict) -> None:
    """Refuse a client AuditEvent that carries the tag marking the server's own entries."""
    if resource_type != RESOURCE_TYPE:
        return
    meta = body.get("meta")
    tags = meta.get("tag") if isinstance(meta, dict) else None
    for tag in tags if isinstance(tags, list) else ():
        if isinstance(tag, dict) and tag.get("system") == TAG_SYSTEM and tag.get("code") == TAG_CODE:
            raise bad_request(
                f"The tag {TAG_SYSTEM}|{TAG_CODE} marks the server's own audit log entries; a client "
                "AuditEvent cannot carry it",
                expression=("AuditEvent.meta.tag",),
            )
