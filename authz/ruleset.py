"""Rule sets as YAML: parse and validate the whole file, then replace the stored rules atomically.

Format (docs/rules.md has the full reference):

    rules:
      - name: patient-own-data
        role: Patient
        resource: [Observation, Patient]      # or "*"
        operation: [read, search]             # or "*" (data operations only; name generate-token)
        validator: PatientCompartment         # or {LegitimateInterest: {inherit: true}}
        identity-filter: "Patient.active = true"
        property-filters: [{path: name, action: remove}]
        blocked-search-params: [address]
        blocked-includes: ["Patient:general-practitioner"]
        may-widen-access: false               # true: its writes may widen the writer's own access

Every problem is reported with the rule it belongs to, and nothing is stored unless all rules load.
"""

from __future__ import annotations

from typing import Any

import yaml
from django.db import transaction

from resources.definitions import resource_types, search_parameters

from .models import ROLE_PATTERN, Rule, RuleSetVersion
from .rules import DATA_OPERATIONS, DEFAULT_RULES, OPERATIONS, CompiledRule, forget_rules
from .validators import build
from .validators.base import RuleError

_KEYS = {
    "name",
    "role",
    "resource",
    "operation",
    "validator",
    "identity-filter",
    "property-filters",
    "blocked-search-params",
    "blocked-includes",
    "may-widen-access",
}
# Operations that return lists: a rule granting them must be able to narrow in SQL.
_SEARCHING = {"search", "history", "graphql-search", "bulk-export", "everything", "subscribe"}


def parse_yaml(text: str) -> list[dict]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleError(f"Not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or set(data) != {"rules"} or not isinstance(data["rules"], list):
        raise RuleError("A rule file is a mapping with one key, 'rules', holding a list of rules")
    return data["rules"]


def compile_all(raw_rules: list) -> tuple[CompiledRule, ...]:
    """Validate and compile every rule; the first problem raises RuleError naming the rule."""
    compiled = []
    names: set[str] = set()
    for position, raw in enumerate(raw_rules, start=1):
        label = (
            raw.get("name") if isinstance(raw, dict) and isinstance(raw.get("name"), str) else f"#{position}"
        )
        try:
            rule = compile_rule(position, raw)
        except RuleError as exc:
            raise RuleError(f"Rule '{label}': {exc}") from exc
        if rule.name in names:
            raise RuleError(f"Rule '{label}': the name is used by an earlier rule")
        names.add(rule.name)
        compiled.append(rule)
    return tuple(compiled)


def compile_rule(position: int, raw: object) -> CompiledRule:
    import re

    if not isinstance(raw, dict):
        raise RuleError("a rule is a mapping")
    unknown = set(raw) - _KEYS
    if unknown:
        raise RuleError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    for key in ("name", "role", "resource", "operation", "validator"):
        if key not in raw:
            raise RuleError(f"'{key}' is required")
    name, role = raw["name"], raw["role"]
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise RuleError("'name' must be a non-empty text of at most 100 characters")
    if not isinstance(role, str) or not re.match(ROLE_PATTERN, role):
        raise RuleError(f"'role' must be a word of letters, digits, '_' or '-' (got {role!r})")
    resources = _names(raw["resource"], "resource", resource_types(), "resource type")
    operations = _operations(raw["operation"])
    validator = build(raw["validator"])
    bind_types = getattr(validator, "validate_types", None)
    if bind_types is not None:
        bind_types(resources)  # FhirPath searches compile against the rule's own types
    if _cannot_narrow(validator) and operations & _SEARCHING:
        raise RuleError(
            f"validator {validator.name} cannot narrow a search by itself: give it a 'search' or limit the "
            f"rule's operations to single-resource ones (not {', '.join(sorted(operations & _SEARCHING))})"
        )
    identity_filter = raw.get("identity-filter") or ""
    identity_check = _identity_check(identity_filter) if identity_filter else None
    from .filters import parse_property_filters

    filters = parse_property_filters(raw.get("property-filters") or [], resources)
    blocked_params = _blocked_params(raw.get("blocked-search-params") or [], resources)
    blocked_includes = _blocked_includes(raw.get("blocked-includes") or [])
    may_widen = raw.get("may-widen-access", False)
    if not isinstance(may_widen, bool):
        raise RuleError(f"'may-widen-access' is true or false (got {may_widen!r:.100})")
    return CompiledRule(
        position=position,
        name=name,
        role=role,
        resources=resources,
        operations=operations,
        validator=validator,
        identity_filter=identity_filter,
        identity_check=identity_check,
        property_filters=filters,
        blocked_search_params=blocked_params,
        blocked_includes=blocked_includes,
        may_widen_access=may_widen,
        raw=dict(raw),
    )


def _cannot_narrow(validator) -> bool:
    return not validator.can_narrow()


def _names(value: object, key: str, known: frozenset[str], what: str) -> frozenset[str] | None:
    if value == "*":
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise RuleError(f"'{key}' is \"*\", a {what}, or a list of them")
    if "*" in items:
        return None
    for item in items:
        if item not in known:
            raise RuleError(f"unknown {what} '{item}'")
    return frozenset(items)


def _operations(value: object) -> frozenset[str]:
    """The operations a rule grants. `*` stands for the data operations only (rules.DATA_OPERATIONS):
    `generate-token` and `materialize` must be named, beside it or alone (`["*", generate-token]`)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise RuleError("'operation' is \"*\", an operation, or a list of them")
    known = frozenset(OPERATIONS)
    granted: set[str] = set()
    for item in items:
        if item == "*":
            granted |= DATA_OPERATIONS
        elif item in known:
            granted.add(item)
        else:
            raise RuleError(f"unknown operation '{item}'")
    return frozenset(granted)


def _identity_check(expression: str):
    if not isinstance(expression, str):
        raise RuleError("'identity-filter' is a FHIRPath expression (text)")
    from fhirpathpy import compile as compile_fhirpath
    from fhirpathpy.models import models

    from .validators.fhirpath import check_syntax

    try:
        check_syntax(expression)  # fhirpathpy's own parser recovers from syntax errors silently
        compiled = compile_fhirpath(expression, models["r4"])
    except Exception as exc:
        raise RuleError(f"identity-filter '{expression}' is not valid FHIRPath: {exc}") from exc

    def check(identity: dict) -> bool:
        return compiled(identity) == [True]

    return check


def _blocked_params(value: object, resources: frozenset[str] | None) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RuleError("'blocked-search-params' is a list of search parameter codes")
    types = resources if resources is not None else resource_types()
    for code in value:
        if not any(code in search_parameters(t) for t in types):
            raise RuleError(f"unknown search parameter '{code}' for {', '.join(sorted(types))[:200]}")
    return frozenset(value)


def _blocked_includes(value: object) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RuleError("'blocked-includes' is a list like ['Patient:general-practitioner']")
    for spec in value:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or parts[0] not in resource_types():
            raise RuleError(f"blocked include '{spec}' is not Type:parameter[:TargetType]")
        definition = search_parameters(parts[0]).get(parts[1])
        if definition is None or definition.type != "reference":
            raise RuleError(
                f"blocked include '{spec}': '{parts[1]}' is not a reference parameter of {parts[0]}"
            )
    return frozenset(value)


# --- storage -------------------------------------------------------------------------------------


def compiled_default() -> tuple[CompiledRule, ...]:
    return compile_all(DEFAULT_RULES)


def compiled_from_database() -> tuple[CompiledRule, ...]:
    rows = list(Rule.objects.order_by("position"))
    try:
        return compile_all([as_yaml(row) for row in rows])
    except RuleError:
        # A stored rule that no longer compiles (definitions changed under it) must not open
        # anything up: deny everything and say why, loudly.
        import logging

        logging.getLogger(__name__).exception("Stored rules do not compile; denying every request")
        return ()


def as_yaml(row: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": row.name,
        "role": row.role,
        "resource": _star(row.resources),
        "operation": _star(row.operations),
        "validator": row.validator,
    }
    if row.identity_filter:
        out["identity-filter"] = row.identity_filter
    if row.property_filters:
        out["property-filters"] = row.property_filters
    if row.blocked_search_params:
        out["blocked-search-params"] = row.blocked_search_params
    if row.blocked_includes:
        out["blocked-includes"] = row.blocked_includes
    if row.may_widen_access:
        out["may-widen-access"] = True
    return out


def _star(items: list) -> str | list:
    return "*" if items in (["*"], "*") else items


def _as_list(value: object) -> list:
    return ["*"] if value == "*" else [value] if isinstance(value, str) else list(value)


@transaction.atomic
def replace_rules(raw_rules: list) -> tuple[CompiledRule, ...]:
    """Validate everything, then swap the stored rule set in one transaction (or change nothing)."""
    compiled = compile_all(raw_rules)
    Rule.objects.all().delete()
    Rule.objects.bulk_create(
        Rule(
            position=rule.position,
            name=rule.name,
            role=rule.role,
            resources=_as_list(rule.raw["resource"]),
            operations=_as_list(rule.raw["operation"]),
            validator=rule.raw["validator"],
            identity_filter=rule.identity_filter,
            property_filters=rule.raw.get("property-filters") or [],
            blocked_search_params=rule.raw.get("blocked-search-params") or [],
            blocked_includes=rule.raw.get("blocked-includes") or [],
            may_widen_access=rule.may_widen_access,
        )
        for rule in compiled
    )
    bump_version()
    return compiled


def bump_version() -> None:
    from django.db.models import F

    if not RuleSetVersion.objects.update(version=F("version") + 1):
        RuleSetVersion.objects.create(version=1)
    transaction.on_commit(forget_rules)


def dump_yaml() -> str:
    rows = list(Rule.objects.order_by("position"))
    rules = [as_yaml(row) for row in rows] if RuleSetVersion.objects.exists() else DEFAULT_RULES
    return yaml.safe_dump({"rules": rules}, sort_keys=False, allow_unicode=True)
