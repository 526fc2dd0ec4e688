"""batch and transaction (https://hl7.org/fhir/R4/http.html#transaction) through the door: the
whole Bundle is one interaction (operation `transaction`, one audit row naming every resource it
touched). A transaction's writes share the door's database transaction; each entry's answer is
shaped as the caller's read of its result, and GET search entries run after the writes, each a
search narrowed like any other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from authz.context import AccessContext
from resources.outcomes import FhirError
from resources.search import engine
from resources.search.engine import SearchPage
from resources.services import Stored
from resources.transaction import EntryResult, process_bundle

from .door import interaction
from .shaping import as_read

SearchOptions = Callable[[list[tuple[str, str]]], tuple[int, str | None, str | None]]


@dataclass(frozen=True)
class BundleEntry:
    result: EntryResult
    shown: Stored | None = None  # the entry's resource as the caller's read shows it
    page: SearchPage | None = None  # a GET search entry's page
    search_error: FhirError | None = None


@dataclass(frozen=True)
class BundleOutcome:
    kind: str  # "batch" or "transaction"
    entries: list[BundleEntry]


@interaction("transaction", writes=True)
def batch(ctx: AccessContext, *, bundle: object, search_options: SearchOptions) -> BundleOutcome:
    """`search_options(params)` reads a search entry's result parameters the way the transport does
    (page size, cursor, total mode), raising FhirError for bad values."""
    kind, results = process_bundle(ctx, bundle)
    return BundleOutcome(kind, [_entry(ctx, result, search_options) for result in results])


def _entry(ctx: AccessContext, result: EntryResult, search_options: SearchOptions) -> BundleEntry:
    if result.search is not None:
        resource_type, params = result.search
        try:
            count, cursor, total = search_options(params)
            page = engine.search(
                ctx, resource_type=resource_type, params=params, count=count, cursor=cursor, total=total
            )
        except FhirError as exc:
            return BundleEntry(result, search_error=exc)
        return BundleEntry(result, page=page)
    if result.stored is None:
        return BundleEntry(result)
    if result.read:
        return BundleEntry(result, shown=result.stored)
    return BundleEntry(result, shown=as_read(ctx, result.stored))
