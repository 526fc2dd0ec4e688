"""Search execution: the result side of https://hl7.org/fhir/R4/search.html.

`search()` answers type-level, system-level (https://hl7.org/fhir/R4/search.html#all) and
compartment searches (#compartments); `everything()` answers Patient `$everything`. The criteria
(`name=...`, chains, `_has`...) are compiled by `criteria.build_criteria` into one `Q` over
`Resource`; this module adds what shapes the result:

- `_sort` (sort.py), `_count` and keyset paging with `next`/`previous` cursors (paging.py);
- `_total=none|estimate|accurate` (#total): nothing is counted unless asked, except when the first
  page is not full and the total is known for free; `estimate` reads the PostgreSQL planner's row
  estimate (one EXPLAIN, no scan) and counts on SQLite;
- `_include`/`_revinclude` (include.py), one SQL statement per level;
- `_contained` is not supported: refused with `Prefer: handling=strict`, otherwise reported;
- unknown parameters: refused with `Prefer: handling=strict`, otherwise reported as ignored (the
  API puts them in an OperationOutcome entry and leaves them out of the `self` link).

`_summary` and `_elements` shape bodies and are applied by the API; `_summary=count` arrives here
as `count=0` with `total="accurate"`.

Each page is one SQL statement over the index tables (plus one per include level); no rows are
filtered in Python. Every query starts from `_scoped(ctx)`, the single place where the caller's
access rules will narrow what search, includes and `$everything` can return.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from django.db import connection
from django.db.models import Q, QuerySet

from audit.services import note_results
from authz import rules
from authz.context import SYSTEM, AccessContext

from .. import definitions, fhirjson, limits
from ..outcomes import FhirError, Issue, bad_request, not_found
from ..services import Stored, check_type
from . import access, include, paging, sort
from . import compartment as compartments
from . import everything as record
from .criteria import build_criteria

# Parameters of the search framework rather than criteria (search.html#return, #paging, #summary).
# `_count`, `_page`, `_total`, `_summary`, `_elements`, `_format` and `_pretty` are read by the API.
RESULT_PARAMS = frozenset(
    {
        "_sort",
        "_count",
        "_page",
        "_total",
        "_summary",
        "_elements",
        "_contained",
        "_containedType",
        "_format",
        "_pretty",
        "_include",
        "_revinclude",
    }
)
# Parameters every resource type has: the only criteria of a system search without `_type`.
COMMON_PARAMS = ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source")

_FIELDS = ("pk", "resource_type", "fhir_id", "version", "last_updated", "body")


@dataclass(frozen=True)
class SearchPage:
    matches: list[Stored]
    next_cursor: str | None
    total: int | None
    used: list[tuple[str, str]]
    ignored: list[str]
    included: list[Stored] = field(default_factory=list)
    previous_cursor: str | None = None
    notes: list[Issue] = field(default_factory=list)  # warnings for the outcome entry


@dataclass
class _Plan:
    condition: Q
    keys: list[sort.SortKey]
    directives: list[include.Directive]
    used: list[tuple[str, str]]
    ignored: list[str]
    notes: list[Issue]
    types: list[str] | None = None  # the searched types (None: every type)
    operation: str = "search"  # the rule operation the rows are narrowed for
    read_operation: str = "read"  # the rule operation included resources are decided for


def search(
    ctx: AccessContext,
    *,
    resource_type: str | None,
    params: list[tuple[str, str]],
    count: int,
    cursor: str | None = None,
    total: str | None = None,
    strict: bool = False,
    compartment: tuple[str, str] | None = None,
    base_urls: tuple[str, ...] = (),
    operation: str = "search",
) -> SearchPage:
    """One page of a search.

    `resource_type` None searches every type (system search, narrowed by `_type`) or, with
    `compartment=(type, id)`, every type of that compartment (`Patient/123/*`). `cursor` is the
    `_page` value of a link this function produced; `total` is None, "none", "estimate" or "accurate".
    `base_urls`: this server's base as the client sees it, so absolute references to local
    resources match (criteria.build_criteria). `operation` is the rule operation the search is
    decided for: `search`, or `graphql-search` for GraphQL lists (whose includes are then decided
    for `graphql-read`).
    """
    limits.check_search_size(params)
    plan = _plan(
        ctx,
        resource_type,
        params,
        strict=strict,
        compartment=compartment,
        base_urls=base_urls,
        operation=operation,
    )
    return _execute(ctx, plan, count=count, cursor=cursor, total=total)


def everything(
    ctx: AccessContext,
    *,
    patient_id: str | None,
    since: datetime | None,
    types: list[str] | None,
    count: int,
    cursor: str | None = None,
    total: str | None = None,
    used: list[tuple[str, str]] | None = None,
    ignored: list[str] | None = None,
) -> SearchPage:
    """One page of a patient record (everything.py), in insertion order. `used`/`ignored`: the
    request's parameters as the API sorted them, reported back like a search's."""
    rules.authorize(ctx, "everything", "Patient")
    for resource_type in types or ():
        if resource_type not in definitions.resource_types():
            raise bad_request(f"_type: unknown resource type '{resource_type}'", expression=("_type",))
    if patient_id is not None:
        _require_patient(ctx, patient_id)
    narrowed = rules.narrowing(ctx, "everything", None)
    visible = access.rows(ctx, "everything").values("pk") if narrowed else None
    # A reference the caller's rules hide (Observation.subject removed) neither places a resource in
    # the record nor brings in the supporting resource it names.
    members = compartments.member_types(record.COMPARTMENT)
    hidden = access.hidden_link_rows(ctx, "everything", members)
    kept = Q()
    if hidden is not None:
        kept = access.compartment_links(
            ctx, "everything", (record.COMPARTMENT, patient_id or ""), members, types, named=False
        )
    condition = record.record(patient_id, visible, hidden, kept) & kept
    condition &= record.narrowing(since=since, types=types)
    plan = _Plan(condition, [], [], list(used or []), list(ignored or []), [], types, "everything")
    return _execute(ctx, plan, count=count, cursor=cursor, total=total)


def _reverse_sources(directives: list[include.Directive]) -> list[str] | None:
    """The types a level's revincludes can add (None: any type, for `*`)."""
    sources = [d.source_type for d in directives if d.reverse]
    return None if None in sources else sources


# The operation deciding included resources, for each listing operation.
_READ_OPERATION = {"search": "read", "graphql-search": "graphql-read"}


def _check_includes(
    ctx: AccessContext,
    types: list[str] | None,
    directives: list[include.Directive],
    operation: str = "search",
) -> None:
    """Refuse (403) an include or revinclude that names a link a matching rule hides. Wildcards
    (`*`, `Type:*`) are not refused: they skip, row by row, the links hidden for that row
    (include.resolve)."""
    for directive in directives:
        if directive.source_type is None or directive.param is None:
            continue
        sources = [directive.source_type] if directive.source_type else (types or [])
        for source in sources:
            params = [directive.param] if directive.param else include.reference_params(source)
            for param in params:
                spec = f"{source}:{param}"
                for searched in types or [source]:
                    rule = rules.blocked_include(ctx, operation, searched, spec) or rules.blocked_include(
                        ctx, _READ_OPERATION[operation], source, spec
                    )
                    if rule is not None:
                        raise rules.refuse_param(
                            "_revinclude" if directive.reverse else "_include", spec, rule
                        )


# --- planning ---------------------------------------------------------------------------------


def _require_patient(ctx: AccessContext, patient_id: str) -> None:
    """The record of a patient the caller may neither read nor run $everything on does not exist
    for it: 404, exactly as a read answers (what the record holds is then narrowed as usual)."""
    from ..selectors import resource_read

    if ctx.role == SYSTEM:
        return
    for operation in ("everything", "read"):
        try:
            resource_read(ctx, resource_type="Patient", fhir_id=patient_id, operation=operation)
            return
        except FhirError as refusal:
            if refusal.status not in (403, 404):
                raise
    raise not_found(f"Patient/{patient_id} is not known")


def _plan(
    ctx: AccessContext,
    resource_type: str | None,
    params: list[tuple[str, str]],
    *,
    strict: bool,
    compartment: tuple[str, str] | None,
    base_urls: tuple[str, ...],
    operation: str = "search",
) -> _Plan:
    used: list[tuple[str, str]] = []
    ignored: list[str] = []
    criteria: list[tuple[str, str]] = []
    sort_values: list[str] = []
    type_values: list[str] = []
    includes: list[tuple[str, str]] = []
    for name, value in params:
        base = name.split(":", 1)[0]
        if base == "_type" and resource_type is None:
            type_values.append(value)
            used.append((name, value))
        elif include.is_include_param(name):
            includes.append((name, value))
        elif base in ("_contained", "_containedType"):
            if _contained(name, value, strict=strict):
                used.append((name, value))
            else:
                ignored.append(name)
        elif base == "_sort" and name == base:
            sort_values.append(value)
            used.append((name, value))
        elif base in RESULT_PARAMS and name == base:
            used.append((name, value))
        else:
            criteria.append((name, value))

    types = _types(resource_type, type_values, compartment)
    for searched in types or ("*",):
        rules.authorize(ctx, operation, searched)
    build = functools.partial(
        build_criteria,
        strict=strict,
        base_urls=base_urls,
        rows=access.reachable(ctx, operation),
        guard=access.guard(ctx, operation),
    )
    if types is None:
        condition, crit_used, crit_ignored = _common_criteria(criteria, build=build, strict=strict)
        sort_types = [_ANY_TYPE]
    else:
        condition, crit_used, crit_ignored = _typed_criteria(types, criteria, build=build)
        sort_types = types
    if compartment is not None:
        condition &= compartments.narrowing(*compartment, resource_type)
        # Membership follows references: one the caller's rules hide must not place a row here.
        condition &= access.compartment_links(
            ctx, operation, compartment, types, types, named=resource_type is not None or bool(type_values)
        )
    used += crit_used
    ignored += crit_ignored

    if types is None:
        for value in sort_values:
            for item in value.split(","):
                if item.strip().lstrip("-") not in COMMON_PARAMS:
                    raise bad_request(
                        f"_sort '{item.strip()}': a search across all types sorts only by the common "
                        f"parameters ({', '.join(COMMON_PARAMS)})",
                        expression=("_sort",),
                    )
    keys = sort.parse_sort(sort_values, sort_types)
    guard = access.guard(ctx, operation)
    for key in keys:
        for sorted_type in types or []:
            guard(sorted_type, key.code)

    directives = []
    for name, value in includes:
        directive = include.parse(name, value, strict=strict)
        if directive is None:
            ignored.append(name)
        else:
            directives.append(directive)
            used.append((name, value))
    _check_includes(ctx, types, directives, operation)
    return _Plan(
        condition,
        keys,
        directives,
        used,
        list(dict.fromkeys(ignored)),
        [],
        types,
        operation,
        _READ_OPERATION[operation],
    )


# Common parameters are the same for every type; any concrete type resolves them.
_ANY_TYPE = "Basic"
# Common parameters answered from the Resource row rather than an index table.
_ROW_PARAMS = ("_id", "_lastUpdated")


def _types(
    resource_type: str | None, type_values: list[str], compartment: tuple[str, str] | None
) -> list[str] | None:
    if compartment is not None:
        compartments.check(compartment[0], resource_type)
    if resource_type is not None:
        check_type(resource_type)
        return [resource_type]
    if not type_values:
        return compartments.member_types(compartment[0]) if compartment is not None else None
    types: list[str] = []
    for value in type_values:
        for item in value.split(","):
            name = item.strip()
            if name not in definitions.resource_types():
                raise bad_request(f"_type: unknown resource type '{name}'", expression=("_type",))
            if compartment is not None:
                compartments.check(compartment[0], name)
            if name not in types:
                types.append(name)
    return types


def _typed_criteria(
    types: list[str], criteria: list[tuple[str, str]], *, build: Callable
) -> tuple[Q, list[tuple[str, str]], list[str]]:
    """Criteria of each type, ORed; with several types a parameter must be known to all of them
    (search.html#all), so one ignored by any type is ignored for all."""

    def compile_all(pairs: list[tuple[str, str]]) -> list:
        return [build(t, pairs) for t in types]

    if len(types) > 1 and _row_only(criteria):
        # The same condition for every type: one `resource_type IN (...)` instead of an OR per type.
        compiled = build(types[0], criteria)
        return Q(resource_type__in=types) & compiled.q, list(compiled.used), _names([compiled])
    compiled = compile_all(criteria)
    ignored = _names(compiled)
    if ignored and len(types) > 1:
        compiled = compile_all([(n, v) for n, v in criteria if n not in ignored])
    used = list(compiled[0].used)
    if not used:
        return Q(resource_type__in=types) if len(types) > 1 else Q(resource_type=types[0]), used, ignored
    condition = Q(resource_type=types[0]) & compiled[0].q
    for resource_type, one in zip(types[1:], compiled[1:], strict=True):
        condition |= Q(resource_type=resource_type) & one.q
    return condition, used, ignored


def _common_criteria(
    criteria: list[tuple[str, str]], *, build: Callable, strict: bool
) -> tuple[Q, list[tuple[str, str]], list[str]]:
    """Criteria of a search across every type: common parameters only (search.html#all)."""
    ignored: list[str] = []
    common: list[tuple[str, str]] = []
    for name, value in criteria:
        if name.split(":", 1)[0] in COMMON_PARAMS:
            common.append((name, value))
        elif strict:
            raise bad_request(
                f"Search parameter '{name}' is not one of the common parameters "
                f"({', '.join(COMMON_PARAMS)}) that a search across all types accepts; name the types "
                "with _type",
                code="not-supported",
                expression=(name,),
            )
        else:
            ignored.append(name)
    if _row_only(common):
        # Answered from the Resource row's own columns: the same condition for every type.
        compiled = build(_ANY_TYPE, common)
        return compiled.q, list(compiled.used), ignored + _names([compiled])
    # _tag, _profile, _security and _source live in index tables keyed by (resource_type, param),
    # and the compiled lookups name the type, so each type gets its own alternative.
    condition, used, more = _typed_criteria(sorted(definitions.resource_types()), common, build=build)
    return condition, used, ignored + more


def _row_only(criteria: list[tuple[str, str]]) -> bool:
    return all(name.split(":", 1)[0] in _ROW_PARAMS for name, _ in criteria)


def _names(compiled: list) -> list[str]:
    out: list[str] = []
    for criteria in compiled:
        for item in criteria.ignored:
            name = item[0] if isinstance(item, tuple) else item
            if name not in out:
                out.append(name)
    return out


def _contained(name: str, value: str, *, strict: bool) -> bool:
    """`_contained` (search.html#contained): only the default (`false`, containers) is offered."""
    default = (name == "_contained" and value == "false") or (
        name == "_containedType" and value == "container"
    )
    if default:
        return True
    if strict:
        raise bad_request(
            f"{name}={value} is not supported: this server searches container resources only",
            code="not-supported",
            expression=(name,),
        )
    return False


# --- execution --------------------------------------------------------------------------------


def _execute(
    ctx: AccessContext, plan: _Plan, *, count: int, cursor: str | None, total: str | None
) -> SearchPage:
    keys = plan.keys
    kinds = [key.kind for key in keys]
    signature = paging.sort_signature([key.spec for key in keys] + kinds)
    position = paging.decode(cursor, signature=signature, kinds=kinds) if cursor else None
    rows = access.rows(ctx, plan.operation, plan.types).filter(plan.condition, deleted=False)
    # Which rule authorises each row, when some rule shapes (property filters) or checks what it returns.
    attribution = rules.rule_case(ctx, plan.operation, plan.types)

    # A rule that checks bodies in Python (FhirPath) may drop rows SQL counted: no total then.
    countable = not rules.checks_bodies(ctx, plan.operation, plan.types)
    if count == 0:
        counted = rows.count() if countable else None
        return SearchPage([], None, counted, plan.used, plan.ignored, notes=plan.notes)

    backward = position is not None and position.direction == paging.BACKWARD
    page = rows.annotate(**sort.annotations(keys))
    if attribution is not None:
        page = page.annotate(access_rule=attribution)
    if position is not None:
        page = page.filter(sort.beyond(keys, position))
    aliases = [key.alias(i) for i, key in enumerate(keys)]
    fetched = list(
        page.order_by(*sort.ordering(keys, reverse=backward)).values_list(
            *_FIELDS, *aliases, *(("access_rule",) if attribution is not None else ())
        )[: count + 1]
    )
    more = len(fetched) > count
    fetched = fetched[:count]
    if backward:
        fetched.reverse()

    def cursor_at(row: tuple, direction: str) -> str:
        values = sort.cursor_values(keys, row, len(_FIELDS))
        return paging.encode(paging.Cursor(direction, values, row[0]), signature=signature, kinds=kinds)

    next_cursor = previous_cursor = None
    if fetched:
        if backward:
            next_cursor = cursor_at(fetched[-1], paging.FORWARD)
            previous_cursor = cursor_at(fetched[0], paging.BACKWARD) if more else None
        else:
            next_cursor = cursor_at(fetched[-1], paging.FORWARD) if more else None
            previous_cursor = cursor_at(fetched[0], paging.BACKWARD) if position is not None else None
    if position is None and not more:
        counted = len(fetched)  # the whole result is on this first page: the total is free
    elif not countable:
        counted = None
    elif total == "accurate":
        counted = rows.count()
    elif total == "estimate":
        counted = _estimate(rows)
    else:
        counted = None

    notes = list(plan.notes)
    included: list[Stored] = []
    matches = _shaped(ctx, fetched, attribution is not None)
    if len(matches) < len(fetched):
        # Includes start from the matches returned: a row a body check dropped must not tell, by
        # what it includes, what it refers to.
        returned = {stored.pk for stored in matches}
        fetched = [row for row in fetched if row[0] in returned]
        counted = None  # a rule's body check dropped rows: a count from SQL would include them
    if plan.directives and fetched:
        include_attribution = rules.rule_case(ctx, plan.read_operation, None)

        def included_rows() -> QuerySet:
            scoped = access.rows(ctx, plan.read_operation)
            return (
                scoped.annotate(access_rule=include_attribution)
                if include_attribution is not None
                else scoped
            )

        def hidden_of(row: tuple) -> frozenset[str]:
            return access.row_hidden_links(ctx, row[1], row[-1])

        found, truncated = include.resolve(
            included_rows,
            plan.directives,
            [
                include.Row(
                    row[0], row[1], row[2], hidden_of(row) if attribution is not None else frozenset()
                )
                for row in fetched
            ],
            _FIELDS + (("access_rule",) if include_attribution is not None else ()),
            hidden_of=hidden_of if include_attribution is not None else None,
            hidden_rows=lambda: access.hidden_link_rows(
                ctx, plan.read_operation, _reverse_sources(plan.directives)
            ),
            kept=(lambda row: _passes(ctx, row)) if include_attribution is not None else None,
        )
        included = _shaped(ctx, found, include_attribution is not None)
        if truncated:
            notes.append(
                Issue(
                    "too-costly",
                    f"Only the first {len(found)} included resources are returned; narrow the search "
                    "or lower _count",
                    "warning",
                )
            )
    note_results(ctx, [*matches, *included])
    return SearchPage(
        matches,
        next_cursor,
        counted,
        plan.used,
        plan.ignored,
        included=included,
        previous_cursor=previous_cursor,
        notes=notes,
    )


def _stored(row: tuple) -> Stored:
    pk, resource_type, fhir_id, version, last_updated, body = row[:6]
    return Stored(resource_type, fhir_id, version, last_updated, body, pk=pk)


def _passes(ctx: AccessContext, row: tuple) -> bool:
    """Whether a row with its authorising rule (last column) passes that rule's body check."""
    rule = rules.rule_at(ctx, row[-1])
    if rule is None:
        return False
    return not rule.validator.checks_body or rule.validator.check(ctx, fhirjson.loads(row[5])) is True


def _shaped(ctx: AccessContext, fetched: list[tuple], attributed: bool) -> list[Stored]:
    """Rows as the caller may see them: with an authorising rule per row (last column), that rule's
    body check drops the row or its property filters redact it."""
    if not attributed:
        return [_stored(row) for row in fetched]
    out = []
    for row in fetched:
        stored = _stored(row)
        rule = rules.rule_at(ctx, row[-1])
        if rule is None:
            continue
        if rule.validator.checks_body and rule.validator.check(ctx, fhirjson.loads(stored.body)) is not True:
            continue
        out.append(replace(stored, body=rules.shape(rule, stored.body)))
    return out


def _estimate(rows: QuerySet) -> int:
    """The planner's row estimate on PostgreSQL (search.html#total allows an estimate)."""
    if connection.vendor != "postgresql":
        return rows.count()
    sql, params = rows.values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])
