"""`_include` and `_revinclude` (https://hl7.org/fhir/R4/search.html#include, #revinclude).

Forms: `Type:param`, `Type:param:TargetType`, `Type:*` and `*` (every reference parameter), each
optionally with `:iterate` (R4; `:recurse` is its R3 name). Included resources are found through the
reference index: an include follows the `ReferenceIndex` rows of the resources already in the
result to their local targets, a revinclude finds the resources whose rows point at them.

Levels: the first level applies every directive to the matches; each further level applies only the
`:iterate` directives to the resources the previous level added, until a level adds nothing or
`max_depth()` further levels have run. Each level is one SQL statement; a resource already in the result
(match or earlier include) is never fetched again, so the Bundle carries each resource once.
References to deleted or unknown resources, and absolute URLs that name no local resource, add
nothing: they are simply absent from the result.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet

from .. import definitions
from ..models import ReferenceIndex, Resource
from ..outcomes import bad_request

INCLUDE = "_include"
REVINCLUDE = "_revinclude"
_ITERATE_MODIFIERS = ("iterate", "recurse")


def max_depth() -> int:
    """Levels after the first that `:iterate` may add; bounds the work a cyclic graph can cause."""
    return getattr(settings, "FHIR_MAX_INCLUDE_DEPTH", 4)


def max_included() -> int:
    """Included resources per page, over all levels."""
    return getattr(settings, "FHIR_MAX_INCLUDED", 5000)


@dataclass(frozen=True)
class Directive:
    """One `_include`/`_revinclude` value; None for `source_type`/`param` stands for `*`."""

    reverse: bool
    iterate: bool
    source_type: str | None
    param: str | None
    target_type: str | None


@dataclass(frozen=True)
class Row:
    pk: int
    resource_type: str
    fhir_id: str
    hidden: frozenset[str] = frozenset()  # reference parameters its authorising rule hides


def is_include_param(name: str) -> bool:
    return name.split(":", 1)[0] in (INCLUDE, REVINCLUDE)


def parse(name: str, value: str, *, strict: bool) -> Directive | None:
    """The directive of one parameter; None when it names something this server does not know
    (reported as ignored unless `strict`, then FhirError 400). A malformed value is always 400."""
    base, _, modifier = name.partition(":")
    if modifier and modifier not in _ITERATE_MODIFIERS:
        raise bad_request(f"Unknown modifier '{modifier}' on {base} (allowed: iterate)", expression=(name,))
    reverse, iterate = base == REVINCLUDE, bool(modifier)
    value = value.strip()
    if value == "*":
        return Directive(reverse, iterate, None, None, None)
    parts = value.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise bad_request(
            f"Malformed {name} value '{value}' (expected Type:param, Type:param:TargetType or *)",
            expression=(name,),
        )
    source_type, param, target_type = parts[0], parts[1], parts[2] if len(parts) == 3 else None
    problem = _problem(source_type, param, target_type)
    if problem is not None:
        if strict:
            raise bad_request(f"{name}={value}: {problem}", code="not-supported", expression=(name,))
        return None
    return Directive(reverse, iterate, source_type, None if param == "*" else param, target_type)


def _problem(source_type: str, param: str, target_type: str | None) -> str | None:
    types = definitions.resource_types()
    if source_type not in types:
        return f"unknown resource type '{source_type}'"
    if target_type is not None and target_type not in types:
        return f"unknown resource type '{target_type}'"
    if param == "*":
        return None
    found = definitions.search_parameters(source_type).get(param)
    if found is None or found.type != "reference":
        return f"'{param}' is not a reference search parameter of {source_type}"
    if target_type is not None and found.targets and target_type not in found.targets:
        return f"{source_type}:{param} does not refer to {target_type}"
    return None


def resolve(
    scoped: Callable[[], QuerySet],
    directives: list[Directive],
    matches: list[Row],
    fields: tuple[str, ...],
    *,
    hidden_of: Callable[[tuple], frozenset[str]] | None = None,
    hidden_rows: Callable[[], Q | None] | None = None,
    kept: Callable[[tuple], bool] | None = None,
) -> tuple[list[tuple], bool]:
    """Rows (`fields`, the first three being pk, resource_type, fhir_id) of every included resource,
    level by level, and whether max_included() cut the result short.

    Links the caller's rules hide (a removed `Observation.subject`) are not followed: an include
    leaves out the reference parameters in each source row's `hidden` (`hidden_of(row)` for the rows
    a level adds), a revinclude the reference rows `hidden_rows()` names (rows held by resources
    whose authorising rule hides them). Directives naming a hidden link were refused before.
    `kept(row)`: False for a row its rule's body check refuses, which neither is returned nor leads
    any further."""
    seen = {row.pk for row in matches}
    current = matches
    out: list[tuple] = []
    active = directives
    limit = max_included()
    for _level in range(max_depth() + 1):
        if not active or not current:
            break
        wanted = _level_filter(active, current, hidden_rows)
        if wanted is None:
            break
        room = limit - len(out)
        found = list(
            scoped()
            .filter(wanted, deleted=False)
            .exclude(pk__in=seen)
            .order_by("pk")
            .values_list(*fields)[: room + 1]
        )
        seen.update(row[0] for row in found)
        if kept is not None:
            found = [row for row in found if kept(row)]
        if len(found) > room:
            out.extend(found[:room])
            return out, True
        out.extend(found)
        current = [Row(row[0], row[1], row[2], hidden_of(row) if hidden_of else frozenset()) for row in found]
        active = [d for d in directives if d.iterate]
    return out, False


def _level_filter(
    directives: list[Directive], current: list[Row], hidden_rows: Callable[[], Q | None] | None = None
) -> Q | None:
    """The resources one level adds, as `pk IN (...)`: one semi-join the planner can drive from the
    reference index. (An OR of several EXISTS would make it test every resource row instead.)"""
    parts = []
    forward_q = _forward([d for d in directives if not d.reverse], current)
    if forward_q is not None:
        rows = ReferenceIndex.objects.filter(
            forward_q, target_type=OuterRef("resource_type"), target_id=OuterRef("fhir_id")
        )
        # Only candidates: the caller's restricted query (`scoped`) decides what is returned.
        parts.append(Resource.objects.system("include candidates").filter(Exists(rows)).values("pk"))
    backward_q = _any([_backward(d, current) for d in directives if d.reverse])
    if backward_q is not None:
        links = ReferenceIndex.objects.filter(backward_q)
        hidden = hidden_rows() if hidden_rows is not None else None
        if hidden is not None:
            links = links.exclude(hidden)
        parts.append(links.values("resource_id"))
    if not parts:
        return None
    return Q(pk__in=parts[0] if len(parts) == 1 else parts[0].union(*parts[1:]))


def _forward(directives: list[Directive], current: list[Row]) -> Q | None:
    """Reference rows to follow: directives with the same sources and target type share one
    `resource_id IN (...) AND param IN (...)` term."""
    groups: dict[tuple[tuple[int, ...], str | None, frozenset[str]], set[str] | None] = {}
    for directive in directives:
        # Sources sharing the links their rules hide share a term.
        by_hidden: dict[frozenset[str], list[int]] = {}
        for row in current:
            if directive.source_type in (None, row.resource_type):
                by_hidden.setdefault(row.hidden, []).append(row.pk)
        for hidden, pks in by_hidden.items():
            key = (tuple(pks), directive.target_type, hidden)
            if directive.param is None or (key in groups and groups[key] is None):
                groups[key] = None  # `*`: every reference parameter
            else:
                groups.setdefault(key, set()).add(directive.param)
    terms = []
    for (sources, target_type, hidden), params in groups.items():
        if params is not None:
            params = params - hidden
            if not params:
                continue
        term = Q(resource_id__in=sources)
        if params is not None:
            term &= Q(param__in=sorted(params)) if len(params) > 1 else Q(param=next(iter(params)))
        elif hidden:
            term &= ~Q(param__in=sorted(hidden))
        if target_type is not None:
            term &= Q(target_type=target_type)
        terms.append(term)
    return _any(terms)


def _backward(directive: Directive, current: list[Row]) -> Q | None:
    by_type: dict[str, list[str]] = {}
    for row in current:
        if directive.target_type in (None, row.resource_type):
            by_type.setdefault(row.resource_type, []).append(row.fhir_id)
    targets = _any([Q(target_type=t, target_id__in=ids) for t, ids in by_type.items()])
    if targets is None:
        return None
    if directive.source_type is not None:
        targets &= Q(resource_type=directive.source_type)
    if directive.param is not None:
        targets &= Q(param=directive.param)
    return targets


def _any(conditions: list[Q | None]) -> Q | None:
    present = [c for c in conditions if c is not None]
    if not present:
        return None
    out = present[0]
    for condition in present[1:]:
        out |= condition
    return out


def reference_params(resource_type: str) -> list[str]:
    """The reference parameters of a type (what `_include=Type:*` follows)."""
    params = definitions.search_parameters(resource_type)
    return sorted(code for code, p in params.items() if p.type == "reference")


def capability_includes(resource_type: str) -> list[str]:
    """`searchInclude` values of the CapabilityStatement: every reference parameter, and `*`."""
    params = definitions.search_parameters(resource_type)
    return ["*", *(f"{resource_type}:{code}" for code, p in params.items() if p.type == "reference")]


def capability_revincludes(resource_type: str) -> list[str]:
    """`searchRevInclude` values: every Source:param whose declared targets include this type."""
    return list(_revinclude_map().get(resource_type, ()))


@functools.cache
def _revinclude_map() -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for source in sorted(definitions.resource_types()):
        for code, param in definitions.search_parameters(source).items():
            if param.type == "reference":
                for target in param.targets:
                    out.setdefault(target, []).append(f"{source}:{code}")
    return {target: tuple(values) for target, values in out.items()}
