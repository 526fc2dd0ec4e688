"""batch and transaction Bundles (https://hl7.org/fhir/R4/http.html#transaction).

A transaction is all-or-nothing and runs in the order the spec gives: DELETE, then POST, then PUT and
PATCH, then GET/HEAD. Before any resource is written, every `fullUrl` that a POST or PUT will give a
real id (`urn:uuid:...` included) is mapped to `Type/id`, conditional references (`Patient?identifier=x`)
are resolved, and all references in the bundle are rewritten. A batch runs each entry on its own: one
failing entry does not stop the others.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import parse_qsl

from django.conf import settings
from django.db import transaction

from authz import grants
from authz.context import AccessContext
from authz.rules import authorize

from . import fhirjson, hooks
from .outcomes import FhirError, Issue, bad_request, error, operation_outcome, precondition_failed
from .search.conditional import find_matches
from .selectors import resource_read, resource_vread
from .services import (
    Stored,
    check_type,
    checked_body,
    insert_many,
    may_result,
    new_id,
    resource_conditional_delete,
    resource_conditional_update,
    resource_create,
    resource_delete,
    resource_patch,
    resource_update,
    serialise_conditional,
    stored_from_row,
)

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


@dataclass
class Entry:
    index: int
    method: str
    url: str
    resource_type: str
    fhir_id: str | None
    query: str | None
    request: dict
    resource: object = None
    full_url: str | None = None


@dataclass
class EntryResult:
    status: int
    stored: Stored | None = None
    location: bool = False
    outcome: dict | None = None
    # A GET search entry: (resource type, parameters), run by the API layer when it renders the
    # response, after the writes of the bundle are committed.
    search: tuple[str, list[tuple[str, str]]] | None = None
    # A read entry's resource is already shaped by the read; a write's is shaped by the door.
    read: bool = False


def process_bundle(ctx: AccessContext, bundle: object) -> tuple[str, list[EntryResult]]:
    """Run a batch or transaction Bundle; returns its type and one result per entry, in entry order.

    The bundle is taken over: references in its resources are rewritten in place.
    """
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise bad_request("POST to the base takes a Bundle of type batch or transaction", code="invalid")
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise bad_request(
            f"Bundle.type must be 'batch' or 'transaction', not '{kind}'", expression=("Bundle.type",)
        )
    raw_entries = bundle.get("entry", [])
    if not isinstance(raw_entries, list):
        raise bad_request("Bundle.entry must be an array", code="structure", expression=("Bundle.entry",))
    if len(raw_entries) > settings.FHIR_MAX_BUNDLE_ENTRIES:
        raise error(413, "too-costly", f"Bundle has more than {settings.FHIR_MAX_BUNDLE_ENTRIES} entries")
    if kind == "transaction":
        authorize(ctx, "transaction", "Bundle")
        return kind, _transaction(ctx, raw_entries)
    return kind, _batch(ctx, raw_entries)


def _parse_entry(index: int, raw: object) -> Entry:
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("request"), dict):
        raise bad_request(f"{where} has no request", code="required", expression=(f"{where}.request",))
    request = raw["request"]
    method, url = request.get("method"), request.get("url")
    if method not in _ORDER:
        raise bad_request(
            f"{where}.request.method '{method}' is not supported", expression=(f"{where}.request.method",)
        )
    if not isinstance(url, str) or not url:
        raise bad_request(
            f"{where}.request.url is missing", code="required", expression=(f"{where}.request.url",)
        )
    path, _, query = url.partition("?")
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise bad_request(
            f"{where}.request.url '{url}' names no resource type", expression=(f"{where}.request.url",)
        )
    entry = Entry(
        index=index,
        method=method,
        url=url,
        resource_type=parts[0],
        fhir_id=parts[1] if len(parts) > 1 else None,
        query=query or None,
        request=request,
        resource=raw.get("resource"),
        full_url=raw.get("fullUrl"),
    )
    if method in ("POST", "PUT") and not isinstance(entry.resource, dict):
        raise bad_request(
            f"{where} ({method}) has no resource", code="required", expression=(f"{where}.resource",)
        )
    if method in ("PUT", "PATCH", "DELETE") and entry.fhir_id is None and entry.query is None:
        raise bad_request(
            f"{where}.request.url '{url}' needs an id or search criteria",
            expression=(f"{where}.request.url",),
        )
    if method == "POST" and len(parts) != 1:
        raise bad_request(
            f"{where}: POST url must be a resource type, not '{url}'", expression=(f"{where}.request.url",)
        )
    return entry


def _entry_error(entry_index: int, exc: FhirError) -> FhirError:
    where = f"Bundle.entry[{entry_index}]"
    issues = [
        Issue(i.code, f"{where}: {i.diagnostics}", i.severity, i.expression or (where,)) for i in exc.issues
    ]
    return FhirError(exc.status, issues)


# --- transaction -----------------------------------------------------------------------------------


@transaction.atomic(savepoint=False)
def _transaction(ctx: AccessContext, raw_entries: list) -> list[EntryResult]:
    entries = [_parse_entry(i, raw) for i, raw in enumerate(raw_entries)]
    _refuse_duplicates(entries)
    written_types = {e.resource_type for e in entries if e.method not in ("GET", "HEAD")}
    results: dict[int, EntryResult] = {}
    # The whole transaction is judged against the caller's grants as they were before it started:
    # no entry, and no combination of entries, may widen the caller's own access (authz/grants.py).
    try:
        with grants.write_guard(ctx, written_types):
            _run_transaction(ctx, entries, results)
    except grants.WideningRefused as exc:
        index = next(
            (i for i, r in results.items() if r.stored is not None and _key(r.stored) == exc.key), None
        )
        raise (exc if index is None else _entry_error(index, exc)) from None
    return [results[i] for i in range(len(entries))]


def _key(stored: Stored) -> tuple[str, str]:
    return (stored.resource_type, stored.fhir_id)


def _run_transaction(ctx: AccessContext, entries: list[Entry], results: dict[int, EntryResult]) -> None:
    ordered = sorted(entries, key=lambda e: (_ORDER[e.method], e.index))
    for entry in ordered:
        if entry.method == "DELETE":
            results[entry.index] = _run(ctx, entry)
    mapping, matched = _assign_ids(ctx, entries)
    _rewrite_references(ctx, entries, mapping)
    for index, stored in matched.items():
        results[index] = EntryResult(200, stored)
    creates = [e for e in ordered if e.method == "POST" and e.index not in matched]
    results.update(_create_all(ctx, creates))
    for entry in ordered:
        if entry.index not in results:
            results[entry.index] = _run(ctx, entry)


def _create_all(ctx: AccessContext, entries: list[Entry]) -> dict[int, EntryResult]:
    """The POST entries, whose ids are already assigned: validated one by one, written in bulk."""
    items, notes = [], []
    for entry in entries:
        try:
            authorize(ctx, "create", entry.resource_type)
            body, note = hooks.prepare(
                ctx, entry.resource_type, checked_body(entry.resource_type, entry.resource), None
            )
            items.append((entry.resource_type, entry.fhir_id, body, "POST"))
            notes.append(note)
        except FhirError as exc:
            raise _entry_error(entry.index, exc) from exc
    stored = insert_many(items) if items else []
    for entry, one, item, note in zip(entries, stored, items, notes, strict=True):
        try:
            hooks.stored(ctx, one, note)
            may_result(ctx, "create", one, item[2])
        except FhirError as exc:
            raise _entry_error(entry.index, exc) from exc
    return {
        entry.index: EntryResult(201, one, location=True) for entry, one in zip(entries, stored, strict=True)
    }


def _refuse_duplicates(entries: list[Entry]) -> None:
    seen: dict[str, int] = {}
    for entry in entries:
        if entry.method in ("GET", "HEAD") or entry.fhir_id is None:
            continue
        key = f"{entry.resource_type}/{entry.fhir_id}"
        if key in seen:
            raise bad_request(
                f"Bundle.entry[{entry.index}] writes {key}, which Bundle.entry[{seen[key]}] writes too",
                expression=(f"Bundle.entry[{entry.index}]",),
            )
        seen[key] = entry.index


def _assign_ids(ctx: AccessContext, entries: list[Entry]) -> tuple[dict[str, str], dict[int, Stored]]:
    """fullUrl -> 'Type/id' for every entry that creates or updates; conditional creates that match
    an existing resource are answered from it (entry index -> stored) and not written."""
    mapping: dict[str, str] = {}
    matched: dict[int, Stored] = {}
    for entry in entries:
        target = None
        try:
            if entry.method == "POST":
                check_type(entry.resource_type)
                # Matching is a read done for a create: the caller must be one who may create.
                authorize(ctx, "create", entry.resource_type)
                criteria = entry.request.get("ifNoneExist")
                found = _locked_matches(ctx, entry.resource_type, criteria) if criteria else []
                if len(found) > 1:
                    raise precondition_failed(f"ifNoneExist '{criteria}' matches more than one resource")
                if found:
                    row = found[0]
                    matched[entry.index] = stored_from_row(row)
                    target = row.fhir_id
                else:
                    target = new_id()
            elif entry.method == "PUT" and entry.fhir_id is not None:
                target = entry.fhir_id
            elif entry.method == "PUT":
                check_type(entry.resource_type)
                authorize(ctx, "update", entry.resource_type)
                found = _locked_matches(ctx, entry.resource_type, entry.query or "")
                if len(found) > 1:
                    raise precondition_failed(
                        f"Conditional update '{entry.url}' matches more than one resource"
                    )
                body_id = entry.resource.get("id")
                target = found[0].fhir_id if found else (body_id or new_id())
                # From here on the conditional update is an ordinary update of the resolved id.
                entry.fhir_id, entry.query = target, None
                entry.resource = {**entry.resource, "id": target}
        except FhirError as exc:
            raise _entry_error(entry.index, exc) from exc
        if target is not None and entry.full_url:
            mapping[entry.full_url] = f"{entry.resource_type}/{target}"
        if entry.method == "POST":
            entry.fhir_id = target
    return mapping, matched


def _locked_matches(ctx: AccessContext, resource_type: str, criteria: str) -> list:
    # The same lock the single conditional interactions take, so that two transactions with the
    # same ifNoneExist cannot both create.
    serialise_conditional(resource_type, criteria)
    return find_matches(ctx, resource_type, criteria)


def _rewrite_references(ctx: AccessContext, entries: list[Entry], mapping: dict[str, str]) -> None:
    conditional_cache: dict[str, str] = {}

    def resolve(value: str, index: int) -> str:
        if value in mapping:
            return mapping[value]
        if "?" in value and "/" not in value.split("?", 1)[0]:
            if value not in conditional_cache:
                conditional_cache[value] = _resolve_conditional_reference(ctx, value, index)
            return conditional_cache[value]
        return value

    def walk(node: object, index: int) -> object:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str):
                    if key == "reference" or value in mapping:
                        node[key] = resolve(value, index)
                else:
                    walk(value, index)
        elif isinstance(node, list):
            for position, value in enumerate(node):
                if isinstance(value, str):
                    if value in mapping:
                        node[position] = mapping[value]
                else:
                    walk(value, index)
        return node

    for entry in entries:
        if isinstance(entry.resource, dict):
            walk(entry.resource, entry.index)


def _resolve_conditional_reference(ctx: AccessContext, reference: str, index: int) -> str:
    resource_type, _, criteria = reference.partition("?")
    try:
        check_type(resource_type)
        found = find_matches(ctx, resource_type, criteria)
    except FhirError as exc:
        raise _entry_error(index, exc) from exc
    if len(found) != 1:
        count = "no" if not found else "more than one"
        raise _entry_error(
            index, precondition_failed(f"Conditional reference '{reference}' matches {count} resource")
        )
    return f"{resource_type}/{found[0].fhir_id}"


# --- batch -----------------------------------------------------------------------------------------


def _batch(ctx: AccessContext, raw_entries: list) -> list[EntryResult]:
    results = []
    for index, raw in enumerate(raw_entries):
        try:
            entry = _parse_entry(index, raw)
            with transaction.atomic():
                results.append(_run(ctx, entry))
        except FhirError as exc:
            results.append(EntryResult(exc.status, outcome=operation_outcome(exc.issues)))
    return results


# --- one entry -------------------------------------------------------------------------------------


def _run(ctx: AccessContext, entry: Entry) -> EntryResult:
    try:
        return _dispatch(ctx, entry)
    except FhirError as exc:
        raise _entry_error(entry.index, exc) from exc


def _dispatch(ctx: AccessContext, entry: Entry) -> EntryResult:
    rtype, fid, request = entry.resource_type, entry.fhir_id, entry.request
    if entry.method == "POST":
        result = resource_create(
            ctx,
            resource_type=rtype,
            body=entry.resource,
            if_none_exist=None if fid else request.get("ifNoneExist"),
            fhir_id=fid,
        )
        return EntryResult(result.status, result.stored, location=result.status == 201)
    if entry.method == "PUT":
        if entry.query is not None:
            result = resource_conditional_update(
                ctx,
                resource_type=rtype,
                criteria=entry.query,
                body=entry.resource,
                if_match=request.get("ifMatch"),
            )
        else:
            result = resource_update(
                ctx, resource_type=rtype, fhir_id=fid, body=entry.resource, if_match=request.get("ifMatch")
            )
        return EntryResult(result.status, result.stored, location=result.status == 201)
    if entry.method == "PATCH":
        if entry.query is not None:
            found = find_matches(ctx, rtype, entry.query)
            if len(found) != 1:
                raise precondition_failed(f"Conditional patch '{entry.url}' must match exactly one resource")
            fid = found[0].fhir_id
        result = resource_patch(
            ctx,
            resource_type=rtype,
            fhir_id=fid,
            patch=_patch_document(entry),
            if_match=request.get("ifMatch"),
        )
        return EntryResult(result.status, result.stored)
    if entry.method == "DELETE":
        if entry.query is not None:
            deleted = resource_conditional_delete(ctx, resource_type=rtype, criteria=entry.query)
        else:
            deleted = resource_delete(ctx, resource_type=rtype, fhir_id=fid)
        return EntryResult(204 if deleted else 200)
    return _read_entry(ctx, entry)


def _patch_document(entry: Entry) -> object:
    """In a Bundle a FHIRPath Patch is the Parameters resource itself; a JSON Patch travels as a
    Binary resource (http.html#patch)."""
    body = entry.resource
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        return body
    if not isinstance(body, dict) or body.get("resourceType") != "Binary":
        raise error(
            415,
            "not-supported",
            "A PATCH entry carries a Parameters (FHIRPath Patch) or a Binary (JSON Patch)",
        )
    if body.get("contentType") != "application/json-patch+json":
        raise error(415, "not-supported", "A Binary patch must be JSON Patch (application/json-patch+json)")
    try:
        return fhirjson.loads(base64.b64decode(body.get("data", ""), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise bad_request("The Binary's data is not base64") from exc


def _read_entry(ctx: AccessContext, entry: Entry) -> EntryResult:
    parts = [p for p in entry.url.partition("?")[0].split("/") if p]
    if len(parts) == 2 and entry.query is None:
        stored = resource_read(ctx, resource_type=parts[0], fhir_id=parts[1])
        return EntryResult(200, stored, read=True)
    if len(parts) == 4 and parts[2] == "_history":
        stored = resource_vread(ctx, resource_type=parts[0], fhir_id=parts[1], version=parts[3])
        return EntryResult(200, stored, read=True)
    if len(parts) == 1:
        check_type(parts[0])
        try:
            params = parse_qsl(entry.query or "", keep_blank_values=True, strict_parsing=bool(entry.query))
        except ValueError as exc:
            raise bad_request(f"Malformed search '{entry.url}'") from exc
        return EntryResult(200, search=(parts[0], params))
    raise error(
        400, "not-supported", f"GET '{entry.url}' in a Bundle: only read, vread and type search are supported"
    )
