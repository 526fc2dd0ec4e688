"""The rule chain: which rule, if any, lets a caller perform an operation, in SQL where it can be.

Rules are ordered. For one resource the first rule whose role, type and operation match, whose
identity filter passes and whose validator allows the resource authorises the request; that rule's
property filters shape what is returned, and its name goes to the audit log. A search is the
caller's criteria AND the OR of the narrowings of every matching rule, and the authorising rule of
each row comes out of the same SQL (a CASE in rule order). Default deny: no rule, no access.

Refusals: a type or operation no rule grants is 403 (401 for a caller without credentials); a
resource the rules do not let the caller read is 404, exactly as if it did not exist. SMART scopes
on the credential are a ceiling on top of the rules.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import BooleanField, Case, ExpressionWrapper, IntegerField, Q, Value, When

from audit.services import note_rule
from resources.fhirdates import aware
from resources.outcomes import FhirError, error

from .context import PUBLIC, SYSTEM, AccessContext
from .errors import credentials_required
from .validators.base import NOTHING, Validator

log = logging.getLogger(__name__)

OPERATIONS = (
    "read",
    "vread",
    "search",
    "history",
    "create",
    "update",
    "patch",
    "delete",
    "transaction",
    "graphql-read",
    "graphql-search",
    "subscribe",
    "bulk-export",
    "everything",
    "generate-token",
    "materialize",
)
# Operations that `operation: "*"` does not cover: a rule must name them. `generate-token` mints a
# credential that acts as an identity (a clinician's `*` must not let it impersonate colleagues);
# `materialize` (CarePlan activities to Tasks) writes on the system's behalf. Future non-data
# operations go here too, so that an existing `*` never silently gains them.
EXPLICIT_OPERATIONS = frozenset({"generate-token", "materialize"})
# What `*` stands for: the data operations (reading, searching and writing resources).
DATA_OPERATIONS = frozenset(OPERATIONS) - EXPLICIT_OPERATIONS

# What a fresh database runs until `load_rules` replaces it: the operator's role may do everything,
# every other role nothing.
DEFAULT_RULES = [
    {
        "name": "admin-all",
        "role": "Admin",
        "resource": "*",
        "operation": ["*", *sorted(EXPLICIT_OPERATIONS)],
        "validator": "Allowed",
    },
]


@dataclass(frozen=True, eq=False)
class CompiledRule:
    position: int
    name: str
    role: str
    resources: frozenset[str] | None  # None: every type
    operations: frozenset[str] | None  # None: "*", the data operations (DATA_OPERATIONS) only
    validator: Validator
    identity_filter: str = ""
    identity_check: Callable[[dict], bool] | None = None
    property_filters: tuple = ()
    blocked_search_params: frozenset[str] = frozenset()
    blocked_includes: frozenset[str] = frozenset()
    may_widen_access: bool = False  # writes it authorises may widen the writer's own access
    raw: dict = field(default_factory=dict)  # as written, for dump_rules and explain

    def covers(self, role: str, operation: str, resource_type: str) -> bool:
        return (
            role == self.role
            and operation in (DATA_OPERATIONS if self.operations is None else self.operations)
            and (resource_type == "*" or self.resources is None or resource_type in self.resources)
        )

    @property
    def unconditional(self) -> bool:
        """Allows every resource it covers (Allowed, no body check): no SQL needed to decide."""
        return self.validator.name == "Allowed" and not self.validator.checks_body

    def row_condition(self, ctx: AccessContext, resource_type: str) -> Q | None:
        """`condition` for one identified row of `resource_type` (see Validator.row_condition)."""
        if self.resources is not None and resource_type not in self.resources:
            return NOTHING
        return self.validator.row_condition(ctx, resource_type)

    def condition(self, ctx: AccessContext, types: Iterable[str] | None) -> Q | None:
        """The rows of `types` (None: any type) this rule lets `ctx` see; None when it cannot narrow."""
        wanted = None if types is None else set(types)
        if wanted is not None and len(wanted) == 1:
            # One searched type: the validator narrows for it alone (smaller subqueries, and the
            # compartment index is used with its type column).
            asked = next(iter(wanted))
        else:
            asked = "*" if self.resources is None else _one(self.resources)
        narrowing = self.validator.narrowing(ctx, asked)
        if narrowing is None:
            return None
        if self.resources is not None and (wanted is None or not wanted <= self.resources):
            narrowing = Q(resource_type__in=sorted(self.resources)) & narrowing
        return narrowing


def _one(resources: frozenset[str]) -> str:
    # Validators narrow per type; one rule's narrowing is the same for all of its types except where
    # the type is the identity's own (the focus row of a compartment), which "*" covers.
    return next(iter(resources)) if len(resources) == 1 else "*"


# --- the current rule set --------------------------------------------------------------------

# The version of the rule set in force, as a scalar subquery: authentication folds it into its own
# statement (tokens.py), so an API-token request learns it without a round trip of its own.
VERSION_SUBQUERY = "(SELECT version FROM authz_rulesetversion ORDER BY id LIMIT 1)"
_UNKNOWN = object()
_cache: tuple[int | None, tuple[CompiledRule, ...]] | None = None


def rules_version() -> int | None:
    """The version of the rule set in force (None: no version row, the default rules)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {VERSION_SUBQUERY}")
        return cursor.fetchone()[0]


def current_rules(version: object = _UNKNOWN) -> tuple[CompiledRule, ...]:
    """The rule chain in force; reloaded when another process changed it. `version`: the rule set
    version when the caller already read it (None: no version row, the default rules)."""
    global _cache
    if version is _UNKNOWN:
        version = rules_version()
    if _cache is not None and _cache[0] == version:
        return _cache[1]
    from . import ruleset

    rules = ruleset.compiled_default() if version is None else ruleset.compiled_from_database()
    _cache = (version, rules)
    _DECISIONS.clear()
    return rules


def forget_rules() -> None:
    global _cache
    _cache = None


def _rules(ctx: AccessContext) -> tuple[CompiledRule, ...]:
    def load() -> tuple[CompiledRule, ...]:
        # The version decides the request; the audit row records it (API tokens learnt it already).
        if ("rules-version",) not in ctx.cache:
            ctx.cache[("rules-version",)] = rules_version()
        return current_rules(ctx.cache[("rules-version",)])

    return ctx.memo(("rules",), load)


def _identity_passes(ctx: AccessContext, rule: CompiledRule) -> bool:
    if rule.identity_check is None:
        return True

    def evaluate() -> bool:
        from .identity import identity_resource

        identity = identity_resource(ctx)
        if identity is None:
            return False
        try:
            return rule.identity_check(identity)
        except Exception:  # a filter that cannot be evaluated grants nothing
            log.warning("Identity filter of rule %s failed to evaluate", rule.name, exc_info=True)
            return False

    return ctx.memo(("identity-filter", rule.name), evaluate)


def matching(ctx: AccessContext, operation: str, resource_type: str) -> list[CompiledRule]:
    """The rules, in order, that may authorise `operation` on `resource_type` for this caller."""
    return [
        rule
        for rule in _rules(ctx)
        if rule.covers(ctx.role, operation, resource_type) and _identity_passes(ctx, rule)
    ]


# --- decisions ---------------------------------------------------------------------------------


def authorize(ctx: AccessContext, operation: str, resource_type: str) -> list[CompiledRule]:
    """The rules that could allow `operation` on `resource_type`; refuse outright when there are none
    (401 for an anonymous caller, 403 otherwise). `resource_type` "*" stands for every type."""
    if ctx.role == SYSTEM:
        return []
    if ctx.scopes is not None and not ctx.scopes.permits(
        operation, resource_type, patient_context=ctx.identity_type == "Patient"
    ):
        raise error(
            403, "forbidden", f"The token's scopes do not permit {operation} on {_what(resource_type)}"
        )
    if resource_type == "*":
        rules = [r for r in _rules(ctx) if r.covers(ctx.role, operation, "*") and _identity_passes(ctx, r)]
    else:
        rules = matching(ctx, operation, resource_type)
    if not rules:
        if ctx.role == PUBLIC:
            raise credentials_required(f"Authentication is required to {operation} {_what(resource_type)}")
        raise error(403, "forbidden", f"Role '{ctx.role}' may not {operation} {_what(resource_type)}")
    return rules


def _what(resource_type: str) -> str:
    return "resources of any type" if resource_type == "*" else resource_type


def decide(
    ctx: AccessContext, operation: str, resource_type: str, pk: int, body: Callable[[], dict]
) -> CompiledRule | None:
    """The rule that authorises `operation` on the stored row `pk`, or None. `body()` gives the
    resource's JSON for validators that check it in Python. Type-level refusals raise (authorize)."""
    if ctx.role == SYSTEM:
        return None
    rules = authorize(ctx, operation, resource_type)
    if rules[0].unconditional:
        note_rule(ctx, rules[0].name, rules[0].property_filters)
        return rules[0]
    return _decided(ctx, rules, resource_type, Q(pk=pk), (), body)[1]


def fetch_decided(
    ctx: AccessContext, operation: str, resource_type: str, fhir_id: str, fields: tuple[str, ...]
) -> tuple[dict | None, CompiledRule | None]:
    """Read one resource's `fields` and decide it in the same statement: (row or None, rule or None).
    For callers whose first rule is conditional (the unconditional case needs no decision)."""
    rules = authorize(ctx, operation, resource_type)
    fetched: dict = {}
    return _decided(
        ctx,
        rules,
        resource_type,
        Q(resource_type=resource_type, fhir_id=fhir_id),
        fields,
        lambda: _loads(fetched["row"]["body"]),
        fetched,
    )


def _loads(text: str) -> dict:
    from resources import fhirjson

    return fhirjson.loads(text)


def _decided(ctx, rules, resource_type, where: Q, fields, body, holder: dict | None = None):
    """One row by `where` with a boolean per rule (its condition) beside `fields`; then the first
    rule whose condition holds and whose body check (if any) passes."""
    values = dict(where.children)
    key = _decision_key(ctx, rules, resource_type, values, fields)
    cached = _DECISIONS.get(key) if key is not None else None
    if cached is None:
        conditions = {rule.position: rule.row_condition(ctx, resource_type) for rule in rules}
        narrowed = tuple(position for position, condition in conditions.items() if condition is not None)
        stand_in = _stand_in(values) if key is not None else values
        query = _decision_query(rules, conditions, Q(**stand_in), fields)
        if key is None:
            row = next(iter(query), None)
        else:
            sql, params = query.query.sql_with_params()
            cached = (sql, tuple(params), narrowed)
            if len(_DECISIONS) >= _DECISIONS_MAX:
                _DECISIONS.clear()
            _DECISIONS[key] = cached
    if cached is not None:
        sql, params, narrowed = cached
        row = _run_cached(sql, params, values, [*fields, *(f"r{p}" for p in narrowed)])
    else:
        narrowed = tuple(p for p in (rule.position for rule in rules) if f"r{p}" in (row or {}))
    if holder is not None:
        holder["row"] = row
    if row is None or row.get("deleted"):
        return row, None
    for rule in rules:
        if rule.position in narrowed and not row[f"r{rule.position}"]:
            continue
        if rule.validator.checks_body and rule.validator.check(ctx, body()) is not True:
            continue
        note_rule(ctx, rule.name, rule.property_filters)
        return row, rule
    return row, None


def _decision_query(rules, conditions: dict, where: Q, fields):
    from resources.models import Resource

    annotations = {
        f"r{rule.position}": ExpressionWrapper(
            conditions[rule.position] or Q(pk__isnull=False), output_field=BooleanField()
        )
        for rule in rules
        if conditions[rule.position] is not None
    }
    return (
        Resource.objects.system("access decision on one row")
        .filter(where)
        .annotate(**annotations)
        .values(*fields, *annotations)
        .order_by()[:1]
    )


# Compiling a decision's query costs several times running it (a Patient's read, profiled: ~3 ms
# of ORM work against ~0.2 ms of SQL). When every rule's condition depends on nothing but the
# caller's identity (no value looked up during the request is baked into the SQL), the compiled SQL
# is kept per rule set, caller and row shape, and the row's own values replace stand-ins.
_DECISIONS: dict[tuple, tuple[str, tuple, tuple]] = {}
_DECISIONS_MAX = 4096
_STAND_IN_PK = -7_318_204_611
_STAND_IN_ID = "\x01row-stand-in"


def _decision_key(ctx, rules, resource_type: str, values: dict, fields) -> tuple | None:
    if not set(values) <= {"pk", "resource_type", "fhir_id"}:
        return None
    if not all(rule.validator.depends_only_on_identity(ctx) for rule in rules):
        return None
    positions = tuple(rule.position for rule in rules)  # the operation's rules, in order
    return (
        id(_rules(ctx)),
        positions,
        ctx.role,
        ctx.identity,
        resource_type,
        tuple(sorted(values)),
        tuple(fields),
    )


def _stand_in(values: dict) -> dict:
    out = dict(values)
    if "pk" in out:
        out["pk"] = _STAND_IN_PK
    if "fhir_id" in out:
        out["fhir_id"] = _STAND_IN_ID
    return out


def _run_cached(sql: str, params: tuple, values: dict, columns: list[str]) -> dict | None:
    actual = [
        values["pk"] if p == _STAND_IN_PK else values["fhir_id"] if p == _STAND_IN_ID else p for p in params
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, actual)
        found = cursor.fetchone()
    if found is None:
        return None
    row = dict(zip(columns, found, strict=True))
    if row.get("last_updated") is not None:
        row["last_updated"] = aware(row["last_updated"])
    return row


def rule_allows(
    ctx: AccessContext, rule: CompiledRule, resource_type: str, pk: int, body: Callable[[], dict]
) -> bool:
    """Whether this one rule allows the row (the explain tool asks rule by rule)."""
    return _decided(ctx, [rule], resource_type, Q(pk=pk), (), body)[1] is not None


def readable(ctx: AccessContext, resource_type: str, pk: int, body: Callable[[], dict]) -> bool:
    """Whether the caller may read the row (without refusing outright when it may not read the type)."""
    try:
        return decide(ctx, "read", resource_type, pk, body) is not None
    except FhirError:
        return False


def narrowing(ctx: AccessContext, operation: str, types: Iterable[str] | None = None) -> Q | None:
    """The rows of `types` (None: any) the caller may `operation`, as one Q; None when none at all."""
    if ctx.role == SYSTEM:
        return Q()
    wanted = None if types is None else list(types)
    rules = [
        rule
        for rule in _rules(ctx)
        if any(rule.covers(ctx.role, operation, t) for t in (wanted or ["*"])) and _identity_passes(ctx, rule)
    ]
    parts: list[Q] = []
    for rule in rules:
        condition = rule.condition(ctx, wanted)
        if condition is None:
            continue  # a rule that cannot narrow (FhirPath without `search`) grants nothing to a search
        note_rule(ctx, rule.name, rule.property_filters)
        if not condition:  # Q(): every row of the wanted types
            parts = [Q()]
            break
        parts.append(condition)
    if not parts:
        return None
    combined = parts[0]
    for part in parts[1:]:
        combined |= part
    return combined & _scope_types(ctx, operation)


def _scope_types(ctx: AccessContext, operation: str) -> Q:
    if ctx.scopes is None:
        return Q()
    types = ctx.scopes.permitted_types(operation, patient_context=ctx.identity_type == "Patient")
    return Q() if types is None else Q(resource_type__in=sorted(types))


def rule_case(ctx: AccessContext, operation: str, types: Iterable[str] | None) -> Case | None:
    """A CASE giving, per row, the position of its authorising rule, when some matching rule shapes or
    checks what it returns (property filters, body checks); None when no row needs to know."""
    if ctx.role == SYSTEM:
        return None
    wanted = None if types is None else list(types)
    rules = [
        rule
        for rule in _rules(ctx)
        if any(rule.covers(ctx.role, operation, t) for t in (wanted or ["*"])) and _identity_passes(ctx, rule)
    ]
    if not any(rule.property_filters or rule.validator.checks_body or _hides(rule) for rule in rules):
        return None
    whens = [When(condition, then=Value(rule.position)) for rule, condition in _whens(ctx, rules, wanted)]
    if not whens:
        return None
    return Case(*whens, default=Value(None), output_field=IntegerField())


def _whens(ctx: AccessContext, rules: list[CompiledRule], wanted: list[str] | None) -> list[tuple]:
    """(rule, WHEN condition) in rule order, for the rules that can narrow."""
    out = []
    for rule in rules:
        condition = rule.condition(ctx, wanted)
        if condition is None:
            continue
        # An empty Q (every row) is not a valid WHEN condition; any row matches pk IS NOT NULL.
        out.append((rule, condition or Q(pk__isnull=False)))
    return out


def authorised_by(
    ctx: AccessContext, operation: str, types: Iterable[str] | None, positions: Iterable[int]
) -> Q:
    """Rows of `types` whose authorising rule (the first whose condition holds, as in `rule_case`)
    is one of `positions`."""
    wanted = None if types is None else list(types)
    chosen = set(positions)
    rules = [
        rule
        for rule in _rules(ctx)
        if any(rule.covers(ctx.role, operation, t) for t in (wanted or ["*"])) and _identity_passes(ctx, rule)
    ]
    whens = [
        When(condition, then=Value(rule.position in chosen)) for rule, condition in _whens(ctx, rules, wanted)
    ]
    if not any(rule.position in chosen for rule in rules):
        return Q(pk__in=[])
    return Q(Case(*whens, default=Value(False), output_field=BooleanField()))


def checks_bodies(ctx: AccessContext, operation: str, types: Iterable[str] | None) -> bool:
    """Whether some rule that may authorise rows of this listing checks bodies in Python."""
    if ctx.role == SYSTEM:
        return False
    wanted = list(types) if types is not None else ["*"]
    return any(
        rule.validator.checks_body
        for rule in _rules(ctx)
        if any(rule.covers(ctx.role, operation, t) for t in wanted) and _identity_passes(ctx, rule)
    )


def rule_at(ctx: AccessContext, position: int | None) -> CompiledRule | None:
    if position is None:
        return None
    rule = next((rule for rule in _rules(ctx) if rule.position == position), None)
    if rule is not None:
        note_rule(ctx, rule.name, rule.property_filters)
    return rule


# --- what a rule lets through: property filters and blocked parameters ------------------------


def shape(rule: CompiledRule | None, body: str) -> str:
    """The resource text as the rule lets the caller see it (property filters applied)."""
    if rule is None or not rule.property_filters:
        return body
    from resources import fhirjson

    from .filters import apply_filters

    return fhirjson.dumps(apply_filters(fhirjson.loads(body), rule.property_filters))


def hidden_params(rule: CompiledRule, resource_type: str) -> frozenset[str]:
    """Codes of the search parameters of `resource_type` whose values `rule` keeps from its caller:
    blocked explicitly, or reading an element its property filters redact (authz/filters.py)."""
    return _hidden(rule, resource_type)[0]


def hidden_links(rule: CompiledRule, resource_type: str) -> frozenset[str]:
    """Codes of the reference parameters of `resource_type` whose links `rule` keeps from its caller:
    the hidden parameters that are references, and those its blocked includes name (`Type:code`).

    The one answer for every route that follows a reference of a resource this rule authorises: a
    criterion (403), an include or revinclude named in the request (403), a wildcard or iterated
    include, a compartment's membership and `$everything` (the link is skipped, or the request
    refused when it names the route)."""
    return _hidden(rule, resource_type)[1]


def _hides(rule: CompiledRule) -> bool:
    return bool(rule.blocked_search_params or rule.blocked_includes)


@functools.lru_cache(maxsize=8192)
def _hidden(rule: CompiledRule, resource_type: str) -> tuple[frozenset[str], frozenset[str]]:
    from resources import definitions

    from .filters import blocked_search_params

    if rule.resources is not None and resource_type not in rule.resources:
        return frozenset(), frozenset()
    params = set(rule.blocked_search_params)
    if rule.property_filters:
        params |= blocked_search_params(resource_type, rule.property_filters)
    definition = definitions.search_parameters(resource_type) if resource_type != "*" else {}
    links = {code for code in params if code in definition and definition[code].type == "reference"}
    for spec in rule.blocked_includes:
        source, code = spec.split(":")[:2]
        if source == resource_type:
            links.add(code)
    return frozenset(params), frozenset(links)


def blocked_params(ctx: AccessContext, operation: str, resource_type: str) -> dict[str, CompiledRule]:
    """Search parameters (codes) the matching rules refuse on `resource_type`, with the rule that does."""
    if ctx.role == SYSTEM:
        return {}

    def compute() -> dict[str, CompiledRule]:
        blocked: dict[str, CompiledRule] = {}
        for rule in matching(ctx, operation, resource_type):
            for code in hidden_params(rule, resource_type):
                blocked.setdefault(code, rule)
        return blocked

    return ctx.memo(("blocked-params", operation, resource_type), compute)


def hides_links(ctx: AccessContext, operation: str) -> bool:
    """Whether any rule the caller may be authorised by for `operation` could hide a link (the quick
    answer for the many callers whose rules hide nothing)."""
    if ctx.role == SYSTEM:
        return False
    return any(
        rule.property_filters or _hides(rule)
        for rule in _rules(ctx)
        if rule.role == ctx.role and (rule.operations is None or operation in rule.operations)
    )


def hiding_rules(ctx: AccessContext, operation: str, resource_type: str) -> dict[int, frozenset[str]]:
    """Position -> hidden links (`hidden_links`) of each matching rule that hides some link of
    `resource_type`; empty when none does (the usual case: nothing to skip)."""
    if ctx.role == SYSTEM:
        return {}
    return {
        rule.position: links
        for rule in matching(ctx, operation, resource_type)
        if (links := hidden_links(rule, resource_type))
    }


def blocked_include(ctx: AccessContext, operation: str, resource_type: str, spec: str) -> CompiledRule | None:
    """The rule that refuses the include `Type:param` on a search of `resource_type`, if any."""
    if ctx.role == SYSTEM:
        return None
    from .filters import blocked_includes

    for rule in matching(ctx, operation, resource_type):
        source = spec.split(":", 1)[0]
        refused = set(rule.blocked_includes)
        if rule.property_filters:
            refused |= blocked_includes(source, rule.property_filters)
        if spec in refused or ":".join(spec.split(":")[:2]) in refused:
            return rule
    return None


def refuse_param(code: str, resource_type: str, rule: CompiledRule) -> FhirError:
    """403 for a blocked parameter or include. The client is told what was refused, never which rule
    or validator refused it (rule names describe the access policy); the rule's name rides on the
    exception as `reason`, for the audit row and the operator (explain names it too)."""
    failure = error(
        403,
        "forbidden",
        f"Search parameter '{code}' on {resource_type} is not allowed for your role",
        expression=(code,),
    )
    failure.reason = f"Search parameter '{code}' on {resource_type} blocked by rule '{rule.name}'"
    return failure
