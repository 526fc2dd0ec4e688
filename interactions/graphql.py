"""FHIR GraphQL (https://hl7.org/fhir/R4/graphql.html) through the door.

A GraphQL request is one interaction: `execute_read` or `execute_search` runs the whole execution
(the adapter's `run`) and writes the request's one audit row, naming `graphql-read` (by-id fields
and references only) or `graphql-search` (any list). Inside it the resolvers call `read` and
`search` below, which ask the rules for `graphql-read` / `graphql-search` (a role can have a smaller
GraphQL surface than its REST one) and, being nested in the request's interaction (door.py), write
no row of their own: the rules they applied and the resources they returned are noted on the
context and land in the request's row.

Mutations (graphql.html#mutations) are writes like REST's: `create`, `update` and `delete` below
are the same interactions (operation, transaction, checks of the stored and proposed state, audit
row, outbox) as interactions/write.py's; only the answer differs, shaped as the caller's
`graphql-read` of the result. The adapter calls each one as an interaction of its own (a context of
its own: one transaction and one row per mutation field).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from authz.context import AccessContext
from resources import hooks, selectors, services
from resources.outcomes import FhirError
from resources.search import engine
from resources.search.engine import SearchPage
from resources.services import Stored, WriteResult

from .door import interaction
from .shaping import as_read
from .write import Written

T = TypeVar("T")


def _status(result) -> int:
    """The status the request's row records: the adapter's result says it (200 when anything was
    answered, else its first refusal's), since GraphQL answers errors inside a 200."""
    return getattr(result, "status", 200)


@interaction("graphql-read", status=_status)
def execute_read(
    ctx: AccessContext, *, run: Callable[[], T], resource_type: str = "", fhir_id: str = ""
) -> T:
    """A request that reads by id only (`Patient(id:)`, references, an instance-level query)."""
    return run()


@interaction("graphql-search", status=_status)
def execute_search(
    ctx: AccessContext, *, run: Callable[[], T], resource_type: str = "", fhir_id: str = ""
) -> T:
    """A request with at least one list (`PatientList(...)`)."""
    return run()


@interaction("graphql-read")
def read(ctx: AccessContext, *, resource_type: str, fhir_id: str) -> Stored:
    """One resource, exactly as a REST read answers it, decided for `graphql-read`: 404 when missing
    or not the caller's, shaped by the authorising rule's property filters."""
    return selectors.resource_read(
        ctx, resource_type=resource_type, fhir_id=fhir_id, operation="graphql-read"
    )


@interaction("graphql-read")
def read_many(
    ctx: AccessContext, *, resource_type: str, fhir_ids: list[str]
) -> dict[str, Stored | FhirError]:
    """`read` of several resources of one type at once (the references of one level of a query):
    each answer, a Stored or the FhirError its own read raises, exactly as `read` gives it."""
    return selectors.resource_read_many(
        ctx, resource_type=resource_type, fhir_ids=fhir_ids, operation="graphql-read"
    )


@interaction("graphql-search")
def search(
    ctx: AccessContext,
    *,
    resource_type: str,
    params: list[tuple[str, str]],
    count: int,
    cursor: str | None = None,
    total: str | None = None,
    base_urls: tuple[str, ...] = (),
) -> SearchPage:
    """One page of a type-level search, decided for `graphql-search`: blocked parameters (explicit,
    or reading an element a property filter redacts) are refused as in REST. Strict: a list has no
    outcome entry to report a parameter it ignored, so one it cannot apply is refused."""
    return engine.search(
        ctx,
        resource_type=resource_type,
        params=params,
        count=count,
        cursor=cursor,
        total=total,
        strict=True,
        base_urls=base_urls,
        operation="graphql-search",
    )


def _written(ctx: AccessContext, result: WriteResult) -> Written:
    shown = as_read(ctx, result.stored, "graphql-read")
    return Written(result.status, result.stored, shown, hooks.warnings(ctx))


def _write_status(written: Written) -> int:
    return written.status


@interaction("create", writes=True, status=_write_status)
def create(ctx: AccessContext, *, resource_type: str, body: object) -> Written:
    """`[Type]Create(res:)`: REST's create (http.html#create)."""
    return _written(ctx, services.resource_create(ctx, resource_type=resource_type, body=body))


@interaction("update", writes=True, status=_write_status)
def update(ctx: AccessContext, *, resource_type: str, fhir_id: str, body: object) -> Written:
    """`[Type]Update(id:, res:)`: REST's update (http.html#update), creating when the id is new."""
    return _written(
        ctx, services.resource_update(ctx, resource_type=resource_type, fhir_id=fhir_id, body=body)
    )


@interaction("delete", writes=True)
def delete(ctx: AccessContext, *, resource_type: str, fhir_id: str) -> WriteResult | None:
    """`[Type]Delete(id:)`: REST's delete (http.html#delete); None when there was nothing to delete."""
    return services.resource_delete(ctx, resource_type=resource_type, fhir_id=fhir_id)
