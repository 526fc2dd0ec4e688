"""Search criteria to one Django `Q` over `Resource` (https://hl7.org/fhir/R4/search.html).

Repeated parameters AND, comma-separated values OR (#combining). Each criterion is an EXISTS over
the index table of its type (types/), chains and `_has` nest further subqueries (chain.py), so the
caller's `Resource.objects.filter(resource_type=T, deleted=False).filter(criteria.q)` is one SQL
statement, and nothing is queried while compiling.

Handling (#errors): a parameter the server does not know or cannot evaluate is listed in `ignored`,
or refused (400, not-supported) when the client asked for strict handling; a malformed value or
modifier is refused (400) either way, naming the parameter and the value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from django.db.models import Q, QuerySet

from .. import definitions, limits
from ..definitions import SearchParam
from ..models import DateIndex
from ..outcomes import FhirError, bad_request
from . import chain, types
from .context import Context, Param, index_rows
from .params import RESULT_PARAMS, InvalidSearch, UnknownParameter, alternatives, parse_name

# Defined by R4 with no expression to index (full-text, named queries, geographic `near`).
_UNEVALUABLE = frozenset({"_text", "_content", "_query"})


@dataclass(frozen=True)
class Criteria:
    q: Q  # applies to Resource.objects.filter(resource_type=T, deleted=False)
    used: list[tuple[str, str]] = field(default_factory=list)  # (name with modifier/chain, value)
    ignored: list[str] = field(default_factory=list)  # unknown or unsupported parameter names


@cache
def supported_parameters(resource_type: str) -> dict[str, SearchParam]:
    """The search parameters of a type this engine evaluates (read-only; for CapabilityStatement too).

    Raises KeyError for an unknown resource type.
    """
    return {
        code: definition
        for code, definition in definitions.search_parameters(resource_type).items()
        if definition.type != "special" and code not in _UNEVALUABLE and definition.expression
    }


def refuse_nul(name: str, value: str) -> None:
    """A NUL character can be neither stored nor compared by PostgreSQL: refuse it up front."""
    if "\x00" in name or "\x00" in value:
        raise bad_request(f"Search parameter '{name.replace(chr(0), '?')}' contains a NUL character")


def build_criteria(
    resource_type: str,
    params: list[tuple[str, str]],
    *,
    strict: bool,
    rows: Callable[[str], QuerySet],
    base_urls: tuple[str, ...] = (),
    guard: Callable[[str, str], None] | None = None,
) -> Criteria:
    """Compile the criteria among `params` for a search of `resource_type`.

    `base_urls`: this server's base URLs as the client sees them, so absolute references to local
    resources match their `Type/id` (settings.FHIR_BASE_URL always counts). `rows(type)`: the
    caller's view of the resources of a type (restricted by the access rules), which every resource a
    chain or `_has` reaches comes from; `guard(type, code)` refuses parameters the rules block.
    """
    ctx = Context(compile=_compile, rows=rows, base_urls=base_urls, guard=guard)
    limits.check_search_size(params)
    for name, value in params:
        refuse_nul(name, value)
    condition, used, params = _single_row_ranges(ctx, resource_type, params)
    ignored: list[str] = []
    for name, value in params:
        if name in RESULT_PARAMS:
            continue
        try:
            condition &= _compile(ctx, resource_type, name, value)
        except UnknownParameter as exc:
            if strict:
                raise bad_request(
                    f"Search parameter '{name}' is not supported for {resource_type}: {exc}",
                    code="not-supported",
                ) from exc
            ignored.append(name)
            continue
        except InvalidSearch as exc:
            raise _refusal(name, value, exc) from exc
        used.append((name, value))
    return Criteria(condition, used, ignored)


_SINGLE_ROW_TYPES = frozenset({"date", "dateTime", "instant", "Period"})


@cache
def _one_index_row(resource_type: str, code: str) -> bool:
    """Whether a date parameter yields at most one index row per resource: its expression is a path
    of single-valued elements ending in a date, dateTime, instant or Period (e.g. Patient.birthDate)."""
    param = supported_parameters(resource_type).get(code)
    if param is None or param.type != "date":
        return False
    steps = param.expression.split(".")
    if steps[0] != resource_type or len(steps) < 2 or not all(step.isidentifier() for step in steps[1:]):
        return False
    type_name = resource_type
    for step in steps[1:]:
        element = definitions.type_schema(type_name).elements.get(step)
        if element is None or element.max != 1 or len(element.types) != 1:
            return False
        type_name = element.types[0]
    return type_name in _SINGLE_ROW_TYPES


def _single_row_ranges(
    ctx: Context, resource_type: str, params: list[tuple[str, str]]
) -> tuple[Q, list[tuple[str, str]], list[tuple[str, str]]]:
    """Repeated bounds of a single-row date parameter (`birthdate=ge1970&birthdate=lt1975`) as one
    EXISTS over that row: the same answer as one EXISTS per bound when a resource has one row,
    and the database can then use both bounds on one index range instead of joining two scans."""
    counts: dict[str, int] = {}
    for name, value in params:
        if "," not in value:
            counts[name] = counts.get(name, 0) + 1
    merged = {name for name, n in counts.items() if n > 1 and ":" not in name and "." not in name}
    merged = {name for name in merged if _one_index_row(resource_type, name)}
    if not merged:
        return Q(), [], params
    for name in merged:
        ctx.check(resource_type, name)  # a blocked parameter is refused however its bounds are combined
    condition, used, rest = Q(), [], []
    bounds: dict[str, Q] = {name: Q() for name in merged}
    for name, value in params:
        if name not in merged or "," in value:
            rest.append((name, value))
            continue
        try:
            (text,) = alternatives(value)
            bounds[name] &= types.date.prefixed_date(text, low_field="low", high_field="high")
        except InvalidSearch as exc:
            raise _refusal(name, value, exc) from exc
        used.append((name, value))
    for name, bound in bounds.items():
        condition &= Q(index_rows(DateIndex, resource_type, name, bound))
    return condition, used, rest


def _refusal(name: str, value: str, exc: InvalidSearch) -> FhirError:
    return bad_request(f"Invalid search parameter '{name}' with value '{value}': {exc}", code=exc.issue_code)


def _compile(ctx: Context, resource_type: str, name: str, value: str) -> Q:
    """One `name=value` on `resource_type`; raises UnknownParameter or InvalidSearch."""
    if name.startswith("_has:"):
        return chain.compile_has(ctx, resource_type, name, value)
    parsed = parse_name(name)
    definition = supported_parameters(resource_type).get(parsed.code)
    if definition is None:
        known = parsed.code in definitions.search_parameters(resource_type)
        raise UnknownParameter("not evaluated by this server" if known else "no such parameter")
    ctx.check(resource_type, parsed.code)
    if parsed.chain is not None:
        return chain.compile_chain(ctx, resource_type, definition, parsed.modifier, parsed.chain, value)
    if not value:
        raise InvalidSearch("empty value")
    return types.compile(ctx, Param(resource_type, definition), parsed.modifier, alternatives(value))
