"""Index rows of one resource for every R4 search parameter of its type
(https://hl7.org/fhir/R4/searchparameter-registry.html), and its compartment memberships
(https://hl7.org/fhir/R4/compartmentdefinition.html).

A `Plan` per resource type is built once, on first use: every parameter's expression is compiled
(compile.py), parts sharing a path are evaluated once for all the parameters that use them, and the
row converter of each (parameter type, FHIR type of the values) is chosen up front. What is not
indexed, and why, is listed in `Plan.skipped`:

- `_id` and `_lastUpdated` are columns of Resource;
- `_text`, `_content`, `_query` (no expression) and Location `near` (special) have no table;
- a choice type that has no meaning for the parameter type gives no rows: the `Age` and `Range`
  forms of Procedure `performed[x]` under `date` (and its `string` form unless written as a date),
  the Attachment form of Consent `source-reference`, and in composites the Quantity, Range and
  Reference forms of Group `characteristic-value`'s token component.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from ..definitions import loader
from . import compile as fhir_compile
from . import composite, date, fhirpath, number, quantity, reference, string, token, uri
from .compile import Runner, converter_for

TABLES = ("token", "string", "date", "number", "quantity", "reference", "uri", "composite")
COMPARTMENT = "compartment"

_CONVERTERS = {
    "token": token.CONVERTERS,
    "string": string.CONVERTERS,
    "date": date.CONVERTERS,
    "number": number.CONVERTERS,
    "quantity": quantity.CONVERTERS,
    "reference": reference.CONVERTERS,
    "uri": uri.CONVERTERS,
}

_UNTYPED_TEXT = {"date": "dateTime", "uri": "uri", "reference": "canonical"}

# Resource columns, not index rows (https://hl7.org/fhir/R4/search.html#all).
_RESOURCE_COLUMNS = {"_id", "_lastUpdated"}


@dataclass(frozen=True, slots=True)
class Output:
    table: str
    param: str
    convert: Callable[[list], list[tuple]]


@dataclass(frozen=True, slots=True)
class Part:
    run: Runner
    outputs: tuple[Output, ...]


@dataclass
class Plan:
    resource_type: str
    # Parts by the top-level JSON key they start from: only the keys a body has are looked at.
    parts_by_key: dict[str, list[Part]] = field(default_factory=dict)
    always: list[Part] = field(default_factory=list)  # parts that yield even from an empty body
    fallbacks: list[tuple[loader.SearchParam, str]] = field(default_factory=list)
    composites: list[composite.CompiledComposite] = field(default_factory=list)
    # reference parameter -> compartment types it links to (compartments()[C][type] lists it)
    compartment_params: dict[str, frozenset[str]] = field(default_factory=dict)
    self_compartment: bool = False
    tables: frozenset[str] = frozenset()
    skipped: dict[str, str] = field(default_factory=dict)

    def extract(self, body: dict) -> dict[str, list[tuple]]:
        """Rows per table, each `(param, *columns)`; compartment rows are `(type, id)`."""
        out: dict[str, list[tuple]] = {}
        start = [body]
        by_key = self.parts_by_key
        for key in body:
            parts = by_key.get(key)
            if parts is not None:
                for part in parts:
                    _emit(part, part.run(start), out)
        for part in self.always:
            _emit(part, part.run(start), out)
        for param, expression in self.fallbacks:
            for type_code, value in fhirpath.evaluate(expression, body):
                if type_code == "string":
                    # fhirpathpy can lose the type of a primitive; text under these is not a string.
                    type_code = _UNTYPED_TEXT.get(param.type, type_code)
                _emit(Part(list, outputs_for(param.code, param.type, type_code)), [value], out)
        if self.composites:
            memo: dict = {}
            for compiled in self.composites:
                rows = compiled.rows(body, memo)
                if rows:
                    param = (compiled.code,)
                    out.setdefault("composite", []).extend(param + row for row in rows)
        members = []
        if self.compartment_params:
            for row in out.get("reference", ()):
                kinds = self.compartment_params.get(row[0])
                if kinds and row[1] in kinds:
                    members.append((row[1], row[2]))
        if self.self_compartment and type(body.get("id")) is str:
            members.append((self.resource_type, body["id"]))
        if members:
            out[COMPARTMENT] = list(dict.fromkeys(members))
        return out


def _emit(part: Part, values: list, out: dict[str, list[tuple]]) -> None:
    if values:
        for output in part.outputs:
            rows = output.convert(values)
            if rows:
                param = (output.param,)
                out.setdefault(output.table, []).extend(param + row for row in rows)


@cache
def outputs_for(code: str, param_type: str, leaf: str) -> tuple[Output, ...]:
    """Where values of FHIR type `leaf` go for a parameter: table, row name and converter."""
    table = _CONVERTERS.get(param_type)
    convert = converter_for(table, leaf) if table else None
    if convert is None:
        return ()
    outputs = [Output(param_type, code, convert)]
    if param_type == "reference" and convert is reference.reference_rows:
        outputs.append(Output("token", f"{code}:identifier", reference.identifier_token_rows))
    return tuple(outputs)


@cache
def plan_for(resource_type: str) -> Plan:
    """The compiled plan of a resource type (KeyError for an unknown type)."""
    params = loader.search_parameters(resource_type)
    plan = Plan(resource_type)
    by_steps: dict[tuple, tuple[Runner, list[Output]]] = {}
    for code, param in params.items():
        if code in _RESOURCE_COLUMNS:
            plan.skipped[code] = "a column of Resource"
            continue
        if not param.expression:
            plan.skipped[code] = "no expression (special)"
            continue
        if param.type == "composite":
            compiled = composite.compile_composite(resource_type, param)
            if compiled is None:
                plan.skipped[code] = "composite outside the compiled subset"
            else:
                plan.composites.append(compiled)
            continue
        if param.type not in _CONVERTERS:
            plan.skipped[code] = f"{param.type} parameter"
            continue
        branches, fallback = fhir_compile.compile_expression(param.expression, resource_type)
        for branch in branches:
            outputs = outputs_for(code, param.type, branch.leaf)
            if not outputs:
                continue
            _, existing = by_steps.setdefault((branch.steps, branch.leaf), (branch.run, []))
            existing.extend(outputs)
        for part in fallback:
            plan.fallbacks.append((param, part))
    for (steps, _), (run, outputs) in by_steps.items():
        part = Part(run, tuple(outputs))
        if steps and steps[0][0] == "key":
            plan.parts_by_key.setdefault(steps[0][1], []).append(part)
        else:
            plan.always.append(part)
    compartments = loader.compartments()
    links: dict[str, set[str]] = {}
    for compartment_type, members in compartments.items():
        for code in members.get(resource_type, ()):
            if code == "{def}":
                continue  # the compartment's own type: self-membership below
            links.setdefault(code, set()).add(compartment_type)
    plan.compartment_params = {code: frozenset(kinds) for code, kinds in links.items()}
    plan.self_compartment = resource_type in compartments
    parts = [*plan.always, *(p for ps in plan.parts_by_key.values() for p in ps)]
    tables = {o.table for p in parts for o in p.outputs}
    tables |= {o.table for param, _ in plan.fallbacks for o in _possible_outputs(param)}
    if plan.composites:
        tables.add("composite")
    if plan.compartment_params or plan.self_compartment:
        tables.add(COMPARTMENT)
    plan.tables = frozenset(tables)
    return plan


def _possible_outputs(param: loader.SearchParam) -> list[Output]:
    # A fallback's value types are known only at run time: assume every table its type can fill.
    outputs = [Output(param.type, param.code, list)]
    if param.type == "reference":
        outputs.append(Output("token", param.code, list))
    return outputs


def extract(resource_type: str, body: dict) -> dict[str, list[tuple]]:
    return plan_for(resource_type).extract(body)
