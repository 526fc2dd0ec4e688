"""Chained parameters and reverse chaining (https://hl7.org/fhir/R4/search.html#chaining, #has).

`subject:Patient.name=peter` keeps resources whose `subject` reference row points at a current
Patient that itself matches `name=peter`. Without a type (`subject.name=peter`) every target type of
the reference that defines the chained parameter is tried (OR); target types that lack it are
skipped. Chains nest: `patient.organization.name=x`.

`_has:Observation:patient:code=1234-5` keeps resources that some current Observation references
through its `patient` parameter, that Observation matching `code=1234-5`; the last part may be
another `_has` or a chain.

Both compile to subqueries over ReferenceIndex joined to the Resource rows of the other side, so
the whole query stays one SQL statement.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q

from ..definitions import SearchParam, resource_types, search_parameters
from ..models import ReferenceIndex
from .context import MAX_DEPTH, Context, index_rows
from .params import InvalidSearch, UnknownParameter


def _check_depth(ctx: Context) -> None:
    if ctx.depth >= MAX_DEPTH:
        raise InvalidSearch(f"chains and _has nest at most {MAX_DEPTH} levels")


def compile_chain(
    ctx: Context,
    resource_type: str,
    definition: SearchParam,
    type_modifier: str | None,
    rest: str,
    value: str,
) -> Q:
    """`code[:Type].rest=value` on `resource_type`; `definition` is the reference parameter `code`."""
    if definition.type != "reference":
        raise UnknownParameter(f"'{definition.code}' is a {definition.type} parameter and cannot be chained")
    _check_depth(ctx)
    if type_modifier is not None:
        if type_modifier not in resource_types():
            raise UnknownParameter(f"'{type_modifier}' is not a resource type")
        candidates: tuple[str, ...] = (type_modifier,)
    elif definition.targets:
        candidates = definition.targets
    else:
        raise UnknownParameter(f"'{definition.code}' names no target types: chain with ':[Type]'")
    inner = ctx.deeper()
    alternatives = None
    for target_type in candidates:
        try:
            criteria = ctx.compile(inner, target_type, rest, value)
        except UnknownParameter:
            continue  # this target type does not define the chained parameter
        matching = ctx.targets(target_type).filter(criteria).values("fhir_id")
        one = Q(target_type=target_type, target_id__in=matching)
        alternatives = one if alternatives is None else alternatives | one
    if alternatives is None:
        raise UnknownParameter(f"no target type of '{definition.code}' has a search parameter '{rest}'")
    return Q(index_rows(ReferenceIndex, resource_type, definition.code, alternatives))


def compile_has(ctx: Context, resource_type: str, name: str, value: str) -> Q:
    """`_has:Source:reference:rest=value` on `resource_type`."""
    parts = name.split(":", 3)
    if len(parts) != 4 or not all(parts[1:]):
        raise InvalidSearch("_has takes the form _has:Type:reference-parameter:parameter")
    _check_depth(ctx)
    _, source_type, reference_code, rest = parts
    if source_type not in resource_types():
        raise UnknownParameter(f"'{source_type}' is not a resource type")
    reference = search_parameters(source_type).get(reference_code)
    if reference is None or reference.type != "reference":
        raise UnknownParameter(f"'{reference_code}' is not a reference parameter of {source_type}")
    ctx.check(source_type, reference_code)
    criteria = ctx.compile(ctx.deeper(), source_type, rest, value)
    sources = ctx.targets(source_type).filter(criteria).values("pk")
    links = ReferenceIndex.objects.filter(
        resource_type=source_type,
        param=reference_code,
        target_type=resource_type,
        target_id=OuterRef("fhir_id"),
        resource_id__in=sources,
    )
    return Q(Exists(links))
