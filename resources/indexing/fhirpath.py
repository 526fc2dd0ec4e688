"""fhirpathpy (https://hl7.org/fhirpath/N1/) for the expression parts compile.py does not cover.

Two things in the R4 definitions (https://hl7.org/fhir/R4/searchparameter-registry.html) need help
before fhirpathpy can run them:

- `resolve()` (https://hl7.org/fhir/R4/fhirpath.html#functions) is not implemented by fhirpathpy.
  Search expressions only use it as `where(resolve() is T)`, which asks for the type of the target,
  so it is rewritten to a user function `refersTo('T')` that reads the type from the reference.
- `x as T` requires a singleton x in fhirpathpy (FHIRPath N1 section 6.3.4), while the definitions
  apply it to repeating elements (`Observation.component.value as Quantity`); `x.ofType(T)` means
  what the definitions intend and accepts a collection, so every `as` is rewritten to it.

Results come back with their FHIR type where fhirpathpy knows it (from the R4 model), else it is
inferred from the JSON shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from functools import cache

from fhirpathpy import compile as fhirpath_compile
from fhirpathpy.engine.nodes import FP_Type, ResourceNode
from fhirpathpy.models import models

MODEL = models["r4"]
TYPE_PARENTS: dict[str, str] = MODEL["type2Parent"]

_RESOLVE_IS = re.compile(r"resolve\(\)\s+is\s+([A-Za-z]+)")
_PAREN_AS = re.compile(r"\(([^()]+?)\s+as\s+([A-Za-z]+)\)")
_FUNC_AS = re.compile(r"\.as\(([A-Za-z]+)\)")
# fhirpathpy does not see a Patient as a Resource: `Resource.id` must name the concrete type.
_ABSTRACT_ROOT = re.compile(r"(?<![A-Za-z.%])(?:Domain)?Resource\.")


def _fhir_type(name: str) -> str:
    # R4 writes `value.as(DateTime)` once; the FHIR type is dateTime.
    return "dateTime" if name == "DateTime" else name


def rewrite(expression: str) -> str:
    """The expression in the form fhirpathpy evaluates (see the module docstring)."""
    text = _RESOLVE_IS.sub(lambda m: f"refersTo('{m.group(1)}')", expression)
    text = _PAREN_AS.sub(lambda m: f"{m.group(1)}.ofType({_fhir_type(m.group(2))})", text)
    return _FUNC_AS.sub(lambda m: f".ofType({_fhir_type(m.group(1))})", text)


def _refers_to(inputs: list, type_code: str) -> list[bool]:
    from .reference import target_type

    return [bool(inputs) and target_type(inputs[0]) == type_code]


_USER_FUNCTIONS = {"refersTo": {"fn": _refers_to, "arity": {1: ["String"]}}}


@cache
def compiled(expression: str) -> Callable:
    return fhirpath_compile(
        rewrite(expression),
        model=MODEL,
        options={"userInvocationTable": _USER_FUNCTIONS, "returnRawData": True},
    )


def evaluate(expression: str, body: dict, *, focus: object = None) -> list[tuple[str, object]]:
    """(FHIR type, JSON value) of each result of `expression` on `body` (or on `focus`, an element
    of `body`, for composite components, with `%resource` the body)."""
    resource_type = body.get("resourceType")
    if type(resource_type) is str:
        expression = _ABSTRACT_ROOT.sub(resource_type + ".", expression)
    function = compiled(expression)
    results = function(body if focus is None else focus, {"resource": body, "rootResource": body})
    typed = []
    for node in results:
        if isinstance(node, ResourceNode):
            value = node.data
            type_code = node.path if node.path and "." not in node.path else None
        else:
            value, type_code = node, None
        if isinstance(value, FP_Type):
            value = str(value)
        if value is None:
            continue
        typed.append((type_code or infer_type(value), value))
    return typed


def infer_type(value: object) -> str:
    """A FHIR type for a JSON value whose element type fhirpathpy did not report."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, Decimal | float):
        return "decimal"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        if "resourceType" in value:
            return "Resource"
        if "coding" in value or set(value) <= {"text", "id", "extension"}:
            return "CodeableConcept"
        if "reference" in value or "identifier" in value:
            return "Reference"
        if "start" in value or "end" in value:
            return "Period"
        if "low" in value or "high" in value:
            return "Range"
        if "value" in value and ("unit" in value or "code" in value):
            return "Quantity"
        if "code" in value or "system" in value:
            return "Coding"
    return "unknown"
