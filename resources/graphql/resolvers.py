"""Resolvers of the FHIR GraphQL schema: every one that fetches data calls the door
(interactions/graphql.py), so what a field returns is what a `graphql-read` or `graphql-search` of
the caller returns, property filters applied. Fields of a resource are read from its body as the door
handed it back (the default resolver: the JSON property of the same name).

- `T(id:)` (https://hl7.org/fhir/R4/graphql.html#searching): a `graphql-read`;
- `TList(...)`: a `graphql-search`; `_count` (default FHIR_DEFAULT_COUNT), `_offset` (the matches
  skipped; `_offset + _count` at most FHIR_MAX_COUNT) and `_sort` as in REST;
- `Reference.resource(optional:, type:)` (graphql.html#references): a `graphql-read` of the target
  (`#id` resolves to a contained resource of the same resource). A target that is missing or that
  the caller may not read is null with an error entry, and both read the same ("... is not known",
  the door's one answer for both; a type the caller may not read at all is told the same way, not
  as the 403 a by-id query of it gets); with `optional: true` it is null without an error; a
  `type:` other than the target's type is null.

References are read a level at a time (batching.py): what a resolver hands back is walked for the
references the query follows, and their targets are read together, before `Reference.resource`
asks (a resource referenced twice is read once per request).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from django.conf import settings
from graphql import GraphQLError

from authz.context import AccessContext
from interactions import graphql as door

from .. import fhirjson
from ..outcomes import FhirError, not_found
from . import batching, cursors
from .errors import from_fhir

# Where a body's references to its contained resources find them, and the mark of a contained
# resource (keys no GraphQL field can name).
CONTAINED = "__contained"
INSIDE = "__inside"


@dataclass
class Request:
    """What a request's resolvers share (the `context` of the execution)."""

    ctx: AccessContext
    base_url: str
    reads: dict = field(default_factory=dict)  # (type, id) -> document or FhirError
    writes: int = 0  # mutations that reached the door

    def writer(self) -> AccessContext:
        """A context of its own for one mutation: the door makes it one interaction (its own
        transaction and audit row), not a part of the request's reads."""
        self.writes += 1
        return replace(self.ctx, cache={})


def document(body: str) -> dict:
    """A resource body as the resolvers walk it: references to contained resources linked to them."""
    resource = fhirjson.loads(body)
    if isinstance(resource, dict) and resource.get("contained"):
        contained = {c.get("id"): c for c in resource["contained"] if isinstance(c, dict)}
        _link(resource, contained)
        for inner in contained.values():
            inner[INSIDE] = True  # its id is local to its container: nothing refers to it by id
    return resource


def _link(value, contained: dict) -> None:
    if isinstance(value, dict):
        reference = value.get("reference")
        if isinstance(reference, str) and reference.startswith("#"):
            value[CONTAINED] = contained.get(reference[1:])
        for item in value.values():
            if isinstance(item, (dict, list)):
                _link(item, contained)
    elif isinstance(value, list):
        for item in value:
            _link(item, contained)


def fetch(request: Request, resource_type: str, fhir_id: str) -> dict:
    """The caller's `graphql-read` of one resource, once per request; raises its FhirError."""
    key = (resource_type, fhir_id)
    if key not in request.reads:
        try:
            stored = door.read(request.ctx, resource_type=resource_type, fhir_id=fhir_id)
            request.reads[key] = document(stored.body)
        except FhirError as refusal:
            request.reads[key] = refusal
    found = request.reads[key]
    if isinstance(found, FhirError):
        raise found
    return found


def read(request: Request, resource_type: str, fhir_id: str) -> dict:
    """`fetch` for a field: a refusal becomes the field's error entry."""
    try:
        return fetch(request, resource_type, fhir_id)
    except FhirError as refusal:
        raise from_fhir(refusal) from refusal


def by_id(resource_type: str):
    def resolve(root, info, id: str) -> dict:  # noqa: A002  (the spec's argument name)
        found = read(info.context, resource_type, id)
        batching.prefetch(info.context, batching.Selection.of(info), [found], resource_type, info.field_nodes)
        return found

    return resolve


def listing(resource_type: str, arguments: dict[str, str]):
    """The resolver of `TList`: GraphQL arguments back to search parameters, one page of the door."""

    def resolve(root, info, _count=None, _offset=None, _sort=None, **given) -> list[dict]:
        request: Request = info.context
        count = settings.FHIR_DEFAULT_COUNT if _count is None else _count
        offset = _offset or 0
        if count < 0 or offset < 0:
            raise GraphQLError("_count and _offset must not be negative")
        if count + offset > settings.FHIR_MAX_COUNT:
            raise GraphQLError(
                f"_offset + _count must not exceed {settings.FHIR_MAX_COUNT}",
                extensions={"code": "too-costly"},
            )
        params = _params(arguments, given, _sort)
        if count == 0:
            return []
        try:
            page = door.search(
                request.ctx,
                resource_type=resource_type,
                params=params,
                count=offset + count,
                base_urls=(request.base_url,),
            )
        except FhirError as refusal:
            raise from_fhir(refusal) from refusal
        found = [document(stored.body) for stored in page.matches[offset:]]
        batching.prefetch(request, batching.Selection.of(info), found, resource_type, info.field_nodes)
        return found

    return resolve


def connection(resource_type: str, arguments: dict[str, str]):
    """The resolver of `TConnection` (graphql.html#searching, "Connections"): one page of the door,
    with the engine's keyset cursors wrapped with the page's offset (cursors.py). `count` is the
    total, counted only when the query selects it."""

    def resolve(root, info, _count=None, _cursor=None, _sort=None, **given) -> dict:
        request: Request = info.context
        count = settings.FHIR_DEFAULT_COUNT if _count is None else _count
        if count < 1 or count > settings.FHIR_MAX_COUNT:
            raise GraphQLError(f"_count must be between 1 and {settings.FHIR_MAX_COUNT}")
        position, offset = cursors.decode(_cursor) if _cursor else (None, 0)
        params = _params(arguments, given, _sort)
        try:
            page = door.search(
                request.ctx,
                resource_type=resource_type,
                params=params,
                count=count,
                cursor=position,
                total="accurate" if _selects(info, "count") else None,
                base_urls=(request.base_url,),
            )
        except FhirError as refusal:
            raise from_fhir(refusal) from refusal
        answer = {
            "count": page.total,
            "offset": offset,
            "pagesize": count,
            "first": cursors.encode(None, 0),
            "previous": cursors.encode(page.previous_cursor, max(offset - count, 0))
            if page.previous_cursor
            else None,
            "next": cursors.encode(page.next_cursor, offset + len(page.matches))
            if page.next_cursor
            else None,
            "last": None,
            "edges": [
                {"mode": "match", "score": None, "resource": document(stored.body)} for stored in page.matches
            ],
        }
        batching.prefetch(
            request, batching.Selection.of(info), [answer], f"{resource_type}Connection", info.field_nodes
        )
        return answer

    return resolve


def reverse(resource_type: str, arguments: dict[str, str], references: dict[str, frozenset[str]]):
    """The resolver of `XList(_reference: p, ...)` on a resource (graphql.html#reverse-references):
    a `graphql-search` of X with `p=[Type]/[id]` of the resource, plus the other arguments. One
    search per resource it is nested under (not batched yet)."""

    listing_of = listing(resource_type, arguments)

    def resolve(root, info, _reference: str, **given) -> list[dict] | None:
        if not isinstance(root, dict) or not root.get("id") or root.get(INSIDE):
            return None
        name = _reference.replace("-", "_")
        owner = root.get("resourceType")
        if name not in references or owner not in references[name]:
            raise GraphQLError(
                f"_reference: {resource_type} has no reference parameter '{_reference}' that may "
                f"point to {owner}",
                extensions={"status": 400},
            )
        extra = {**given, name: [*(given.get(name) or ()), f"{owner}/{root['id']}"]}
        return listing_of(root, info, **extra)

    return resolve


def _params(arguments: dict[str, str], given: dict, sort: str | None) -> list[tuple[str, str]]:
    """GraphQL arguments as the search parameters they stand for."""
    params = [
        (arguments[name], value)
        for name, values in given.items()
        if values is not None
        for value in values
        if value is not None
    ]
    if sort:
        params.append(("_sort", sort))
    return params


def _selects(info, name: str) -> bool:
    return any(
        getattr(selection, "name", None) is not None and selection.name.value == name
        for node in info.field_nodes
        for selection in (node.selection_set.selections if node.selection_set else ())
    )


def reference_resource(root, info, optional=None, type=None):  # noqa: A002  (the spec's names)
    if not isinstance(root, dict) or not isinstance(root.get("reference"), str):
        return None
    reference = root["reference"]
    if reference.startswith("#"):
        target = root.get(CONTAINED)
        if target is None and not optional:
            raise GraphQLError(f"No contained resource {reference}")
        if target is not None and type and target.get("resourceType") != type:
            return None
        return target
    request: Request = info.context
    target_key = local_target(reference, request.base_url)
    if target_key is None:
        if optional:
            return None
        raise GraphQLError(f"{reference} is not a reference this server can resolve")
    if type and target_key[0] != type:
        return None
    try:
        return fetch(request, *target_key)
    except FhirError as refusal:
        if optional:
            return None
        if refusal.status == 403:
            # A type the caller may not read at all: said as a missing target is, so that a
            # reference tells nothing about what it points to.
            refusal = not_found(f"{target_key[0]}/{target_key[1]} is not known")
        raise from_fhir(refusal) from refusal


def local_target(reference: str, base_url: str) -> tuple[str, str] | None:
    """(type, id) of a relative reference or an absolute one to this server; None otherwise."""
    if "://" in reference:
        base = base_url.rstrip("/") + "/"
        if not reference.startswith(base):
            return None
        reference = reference[len(base) :]
    # A version-specific reference (`Type/id/_history/v`) is not resolved: its target is a version,
    # which a graphql-read of the current resource would not be.
    parts = urlsplit(reference).path.split("/")
    if len(parts) == 2 and parts[0][:1].isupper() and fhirjson.is_valid_id(parts[1]):
        return parts[0], parts[1]
    return None


def prop(key: str):
    """The JSON property `key` (for fields whose name is a Python keyword, such as `class`)."""

    def resolve(root, info):
        return root.get(key) if isinstance(root, dict) else None

    return resolve


def extensions(key: str):
    """`extension(url:)` and `modifierExtension(url:)`: the extensions, or those with that url."""

    def resolve(root, info, url=None):
        values = root.get(key) if isinstance(root, dict) else None
        if values is None or url is None:
            return values
        return [e for e in values if isinstance(e, dict) and e.get("url") == url]

    return resolve


# --- mutations (https://hl7.org/fhir/R4/graphql.html#mutations) -------------------------------------


def _answer(request: Request, written) -> dict | None:
    if written.shown is None:
        return None
    request.reads.pop((written.stored.resource_type, written.stored.fhir_id), None)
    return document(written.shown.body)


def creating(resource_type: str):
    def resolve(root, info, res: dict):
        request: Request = info.context
        try:
            written = door.create(request.writer(), resource_type=resource_type, body=res)
        except FhirError as refusal:
            raise from_fhir(refusal) from refusal
        return _answer(request, written)

    return resolve


def updating(resource_type: str):
    def resolve(root, info, id: str, res: dict):  # noqa: A002  (the spec's argument name)
        request: Request = info.context
        try:
            written = door.update(request.writer(), resource_type=resource_type, fhir_id=id, body=res)
        except FhirError as refusal:
            raise from_fhir(refusal) from refusal
        return _answer(request, written)

    return resolve


def deleting(resource_type: str):
    def resolve(root, info, id: str):  # noqa: A002  (the spec's argument name)
        request: Request = info.context
        try:
            deleted = door.delete(request.writer(), resource_type=resource_type, fhir_id=id)
        except FhirError as refusal:
            raise from_fhir(refusal) from refusal
        request.reads.pop((resource_type, id), None)
        text = (
            f"{resource_type}/{id} deleted"
            if deleted is not None
            else f"{resource_type}/{id}: nothing to delete"
        )
        return {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "information", "code": "informational", "diagnostics": text}],
        }

    return resolve
