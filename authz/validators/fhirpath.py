"""`FhirPath`: a boolean FHIRPath expression (https://hl7.org/fhirpath/N1/, as profiled for FHIR in
https://hl7.org/fhir/R4/fhirpath.html) decides each resource, optionally with a search that
narrows lists in SQL.

    validator:
      FhirPath:
        expression: "status = 'final' and subject.reference = 'Patient/' + %identity.id"
        search: "status=final&subject=%identity"

`check` evaluates `expression` on the resource with fhirpathpy and the R4 model; `%resource` is the
resource and `%identity` the caller's identity resource (empty without one). Only a result of
exactly `[true]` allows; an empty or non-boolean result, or an evaluation error, refuses (fail
closed).

`search` is FHIR search criteria (https://hl7.org/fhir/R4/search.html) over the rule's types, where
the literal `%identity` stands for the caller's identity reference (`Patient/123`); it is compiled
by the search engine, strictly (a parameter it cannot evaluate is an error, never ignored). Without
`search` the validator cannot narrow a list (`narrowing` is None) and only single-resource
operations can use it; without an identity a search that mentions `%identity` matches nothing.

Load-time checks (RuleError): the expression must parse (fhirpathpy's own parser recovers from
syntax errors silently, so the grammar is run strictly here) and evaluate on an empty resource
(which catches unknown functions, wrong arities and misspelt `%variables`); the search must be a
well-formed query of known search parameters, and, once the loader gives the rule's types
(`validate_types`), compile for each of them. Asked for "*" (a rule over several types), the
narrowing is one condition per type: the rule's types when known, else every type the search fits.

Writes: the expression sets no limit of its own on the Patient compartments a written resource may
enter (it sees the whole resource, so the rule author states the subject there; inside AllOf the
other parts' limits hold). When the expression or the search mentions `%identity`, the grants rest
on the caller's identity resource: any change a caller makes to its own identity resource counts as
a change of its grants and is refused unless the rule allows widening. A `search` whose chains or
`_has` reach other resources is not followed by the write checks: such a rule can be widened by
writes to the resources it reaches, so do not give the same role a write rule on them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.error.ErrorListener import ErrorListener
from django.db.models import Q, QuerySet
from fhirpathpy import compile as fhirpath_compile
from fhirpathpy.models import models
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from resources import definitions
from resources.outcomes import FhirError
from resources.search.criteria import build_criteria, supported_parameters
from resources.search.params import RESULT_PARAMS

from . import lookups
from .base import NOTHING, RuleError, Validator

if TYPE_CHECKING:
    from authz.context import AccessContext

log = logging.getLogger(__name__)

MODEL = models["r4"]
IDENTITY = "%identity"
# Compiling a search needs a type; the common parameters answered from the Resource row (_id,
# _lastUpdated) compile the same for every type, as in a search across all types.
_ROW_PARAMS = ("_id", "_lastUpdated")
_ANY_TYPE = "Basic"
# Stands in for the caller while compiling at load time (compiling runs no query).
_PLACEHOLDER_IDENTITY = "Patient/placeholder"


class _Strict(ErrorListener):
    def syntaxError(self, recognizer, offendingSymbol, line, column, msg, e):  # noqa: N802, N803 - ANTLR's API
        raise RuleError(f"column {column + 1}: {msg}")


def check_syntax(expression: str) -> None:
    """RuleError unless `expression` is one complete FHIRPath expression."""
    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_Strict())
    tokens = CommonTokenStream(lexer)
    parser = FHIRPathParser(tokens)
    parser.removeErrorListeners()
    parser.addErrorListener(_Strict())
    parser.expression()
    if tokens.LA(1) != Token.EOF:
        raise RuleError(f"unexpected '{tokens.LT(1).text}' after a complete expression")


@cache
def _evaluable_codes() -> frozenset[str]:
    """Every search parameter code the engine evaluates on some type."""
    return frozenset(code for t in definitions.resource_types() for code in supported_parameters(t))


def _parse_search(search: str) -> list[tuple[str, str]]:
    try:
        pairs = parse_qsl(search.lstrip("?"), keep_blank_values=True, strict_parsing=True)
    except ValueError as exc:
        raise RuleError(f"search '{search}' is not a query string (name=value&...)") from exc
    if not pairs:  # no criteria would match every row
        raise RuleError(f"search '{search}' has no criteria")
    for name, value in pairs:
        code = name.split(":", 1)[0].split(".", 1)[0]
        if code in RESULT_PARAMS:
            raise RuleError(f"search '{search}': '{name}' shapes results; a search here takes criteria only")
        if not value:
            raise RuleError(f"search '{search}': '{name}' has no value")
        if not name.startswith("_has:") and code not in _evaluable_codes():
            raise RuleError(f"search '{search}': '{code}' is not a search parameter this server evaluates")
    return pairs


class FhirPath(Validator):
    name = "FhirPath"
    checks_body = True

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - {"expression", "search"}
        if unknown:
            raise RuleError(
                f"{self.name}: unknown parameter(s) {', '.join(sorted(map(str, unknown)))} "
                "(known: expression, search)"
            )
        expression = params.get("expression")
        if not isinstance(expression, str) or not expression.strip():
            raise RuleError(f"{self.name}: 'expression' (a FHIRPath text) is required")
        search = params.get("search")
        if search is not None and (not isinstance(search, str) or not search.strip()):
            raise RuleError(f"{self.name}: 'search' must be search criteria text like 'status=final'")
        self.expression: str = expression
        self.search: str | None = search
        self._evaluate = self._compile(expression)
        try:
            self._pairs = _parse_search(search) if search is not None else []
        except RuleError as exc:
            raise RuleError(f"{self.name}: {exc}") from exc
        self._types: tuple[str, ...] | None = None  # the rule's types, from validate_types
        self._fitting: tuple[str, ...] | None = None

    def _compile(self, expression: str) -> Callable:
        try:
            check_syntax(expression)
            compiled = fhirpath_compile(expression, model=MODEL)
            # fhirpathpy resolves functions and variables only when it evaluates: try once on an
            # empty resource, so a misspelt function or `%variable` fails the load, not every request.
            empty = {"resourceType": "Basic"}
            compiled(empty, {"resource": empty, "rootResource": empty, "identity": []})
        except RuleError as exc:
            raise RuleError(f"{self.name}: expression '{expression}' is not valid FHIRPath: {exc}") from exc
        except Exception as exc:
            raise RuleError(f"{self.name}: expression '{expression}' cannot be evaluated: {exc}") from exc
        return compiled

    def can_narrow(self) -> bool:
        return self.search is not None

    def validate_types(self, resource_types: Iterable[str] | None) -> None:
        """For the loader: check that `search` compiles for each of the rule's types, and keep them
        for narrowings asked for "*" (a rule over several types). None (a rule over every type): the
        search must compile for at least one type; the types it does not fit then match nothing."""
        if self.search is None:
            return
        if resource_types is None:
            self._types = None
            if not self._row_only() and not self._fitting_types():
                raise RuleError(f"{self.name}: search '{self.search}' fits no resource type")
            return
        types = tuple(sorted(resource_types))
        for resource_type in types:
            try:
                self._criteria(resource_type, _PLACEHOLDER_IDENTITY)
            except (FhirError, KeyError) as exc:
                raise RuleError(
                    f"{self.name}: search '{self.search}' on {resource_type}: {_reason(exc)}"
                ) from exc
        self._types = types

    def narrowing(self, ctx: AccessContext, resource_type: str) -> Q | None:
        if self.search is None:
            return None
        if self._mentions_identity() and not ctx.identity:
            return NOTHING
        identity = ctx.identity or ""
        if resource_type != "*":
            return self._safe_criteria(resource_type, identity)
        if self._row_only():
            return self._safe_criteria(_ANY_TYPE, identity)
        # Index lookups name their type, so "*" is an OR of one condition per type: the rule's
        # types when the loader gave them, else every type the search fits (the rule engine ANDs
        # the rule's own types on top).
        types = self._types if self._types is not None else self._fitting_types()
        if not types:
            return NOTHING
        condition = Q(resource_type=types[0]) & self._safe_criteria(types[0], identity)
        for one in types[1:]:
            condition |= Q(resource_type=one) & self._safe_criteria(one, identity)
        return condition

    def check(self, ctx: AccessContext, resource: dict) -> bool | None:
        from authz.identity import identity_resource

        identity = identity_resource(ctx)
        variables = {
            "resource": resource,
            "rootResource": resource,
            "identity": identity if identity is not None else [],
        }
        try:
            result = self._evaluate(resource, variables)
        except Exception:
            log.info("FhirPath '%s' failed on %s; refused", self.expression, resource.get("resourceType"))
            return False
        # Exactly one `true`: `[1]`, `['true']`, `[]` and `[true, true]` all refuse.
        return isinstance(result, list) and len(result) == 1 and result[0] is True

    # --- writes ---

    def patient_writes(self, ctx: AccessContext) -> Q | None:
        # The expression is the rule author's statement of what may be written (it sees the whole
        # resource, its subject included); it sets no compartment limit of its own. Inside AllOf the
        # other parts' limits hold.
        return None

    def patient_writes_key(self, ctx: AccessContext) -> tuple | None:
        return ()  # no limit, whoever asks

    def grant_basis(self, ctx: AccessContext) -> frozenset[tuple[str, str]]:
        if not self._uses_identity() or not ctx.identity:
            return frozenset()
        from authz.identity import identity_resource

        identity = identity_resource(ctx)
        if identity is None:
            return frozenset()
        # Any change to the identity resource may change what the expression grants.
        content = {k: v for k, v in identity.items() if k not in ("meta", "text")}
        digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
        return frozenset({("identity", digest)})

    def basis_types(self, ctx: AccessContext) -> frozenset[str]:
        if not self._uses_identity() or not ctx.identity_type:
            return frozenset()
        return frozenset({ctx.identity_type})

    def _uses_identity(self) -> bool:
        return IDENTITY in self.expression or self._mentions_identity()

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"expression": self.expression}
        if self.search is not None:
            out["search"] = self.search
        return out

    # --- search ---

    def _mentions_identity(self) -> bool:
        return any(IDENTITY in value for _, value in self._pairs)

    def _row_only(self) -> bool:
        return all(name.split(":", 1)[0] in _ROW_PARAMS for name, _ in self._pairs)

    def _criteria(self, resource_type: str, identity: str) -> Q:
        pairs = [(name, value.replace(IDENTITY, identity)) for name, value in self._pairs]
        # Chains and _has in the rule's own search reach other resources as the platform sees them:
        # the search is the rule author's condition, not the caller's, and going through the
        # caller's rules here would make a rule depend on itself.
        return build_criteria(resource_type, pairs, strict=True, rows=_all_rows).q

    def _fitting_types(self) -> tuple[str, ...]:
        """Every resource type the search compiles for (worked out once; compiling runs no query)."""
        if self._fitting is None:
            fitting = []
            for resource_type in sorted(definitions.resource_types()):
                try:
                    self._criteria(resource_type, _PLACEHOLDER_IDENTITY)
                except (FhirError, KeyError):
                    continue
                fitting.append(resource_type)
            self._fitting = tuple(fitting)
        return self._fitting

    def _safe_criteria(self, resource_type: str, identity: str) -> Q:
        try:
            return self._criteria(resource_type, identity)
        except (FhirError, KeyError) as exc:
            log.warning(
                "FhirPath search '%s' on %s: %s; matches nothing", self.search, resource_type, _reason(exc)
            )
            return NOTHING


def _all_rows(resource_type: str) -> QuerySet:
    return lookups.resources()


def _reason(exc: Exception) -> str:
    if isinstance(exc, FhirError):
        return "; ".join(issue.diagnostics for issue in exc.issues) or str(exc.status)
    return f"unknown resource type {exc}"
