"""Explain the rule chain: which rules matched a request, and what each one's validator said.

Used by the `X-Explain: true` header (Admin callers, with FHIR_EXPLAIN on; `X-Explain-Role` and
`X-Explain-Identity` evaluate the request as someone else) and by `python manage.py explain`.
Nothing here changes what is allowed: it evaluates the same functions the data layer runs.
"""

from __future__ import annotations

from resources.outcomes import FhirError, Issue

from . import rules
from .context import AccessContext


def explain(
    ctx: AccessContext, operation: str, resource_type: str, fhir_id: str | None = None
) -> list[Issue]:
    """One information issue per rule of the caller's role, then the verdict."""
    lines: list[Issue] = [
        Issue(
            "informational",
            f"Explaining {operation} on {resource_type}{'/' + fhir_id if fhir_id else ''} for role "
            f"'{ctx.role}'{', identity ' + ctx.identity if ctx.identity else ''}"
            f"{', scopes ' + ctx.scopes.as_text() if ctx.scopes is not None else ''}",
            "information",
        )
    ]
    row = _row(resource_type, fhir_id) if fhir_id else None
    for rule in rules.current_rules():
        if rule.role != ctx.role:
            continue
        if not rule.covers(ctx.role, operation, resource_type):
            lines.append(_info(rule, "does not cover this type or operation"))
            continue
        if not rules._identity_passes(ctx, rule):
            lines.append(_info(rule, f"identity filter '{rule.identity_filter}' does not pass"))
            continue
        lines.append(_info(rule, _verdict(ctx, rule, operation, resource_type, row)))
    lines.append(_outcome(ctx, operation, resource_type, fhir_id, row))
    return lines


def _row(resource_type: str, fhir_id: str):
    from resources.models import Resource

    return (
        Resource.objects.system("explain")
        .filter(resource_type=resource_type, fhir_id=fhir_id, deleted=False)
        .values_list("pk", "body")
        .first()
    )


def _verdict(ctx: AccessContext, rule, operation: str, resource_type: str, row) -> str:
    validator = rule.validator
    described = f"validator {validator.name}"
    if row is None:
        narrowing = rule.condition(ctx, [resource_type])
        if narrowing is None:
            return f"matches; {described} cannot narrow a search, so it grants no listing"
        return f"matches; {described} narrows searches to: {narrowing or 'every resource of the type'}"
    allowed = _allows(ctx, rule, operation, resource_type, row)
    return f"matches; {described} {'allows' if allowed else 'does not allow'} this resource" + (
        f" (property filters: {', '.join(f.path + ' ' + f.action for f in rule.property_filters)})"
        if rule.property_filters and allowed
        else ""
    )


def _allows(ctx: AccessContext, rule, operation: str, resource_type: str, row) -> bool:
    from resources import fhirjson

    pk, body = row
    return rules.rule_allows(ctx, rule, resource_type, pk, lambda: fhirjson.loads(body))


def _outcome(ctx: AccessContext, operation: str, resource_type: str, fhir_id: str | None, row) -> Issue:
    try:
        matching = rules.authorize(ctx, operation, resource_type)
    except FhirError as refusal:
        return Issue(
            "forbidden",
            f"Verdict: refused outright ({refusal.status}): {refusal.issues[0].diagnostics}",
            "information",
        )
    if fhir_id is None:
        return Issue(
            "informational",
            f"Verdict: a search returns what the OR of {len(matching)} rule(s) allows",
            "information",
        )
    if row is None:
        return Issue("not-found", f"Verdict: {resource_type}/{fhir_id} does not exist (404)", "information")
    from resources import fhirjson

    decided = rules.decide(ctx, operation, resource_type, row[0], lambda: fhirjson.loads(row[1]))
    if decided is None:
        return Issue(
            "not-found", "Verdict: no rule allows this resource: answered as not found (404)", "information"
        )
    return Issue("informational", f"Verdict: allowed by rule '{decided.name}'", "information")


def _info(rule, text: str) -> Issue:
    return Issue("informational", f"Rule '{rule.name}' (#{rule.position}): {text}", "information")
