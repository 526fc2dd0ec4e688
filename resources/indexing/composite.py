"""Composite index rows (https://hl7.org/fhir/R4/search.html#composite).

Row columns: (c1_system, c1_code, c2_system, c2_code, c2_number, c2_low, c2_high, c2_string,
c3_number), as the CompositeIndex docstring defines them. The composite's expression selects root
elements (the Observation itself, each Observation.component, each useContext...); each component's
expression is evaluated relative to one root, and the rows are the cartesian product of the
component values *of that root*, so `component-code-value-quantity` never pairs one component's code
with another component's value.

Component values by type:
- token: (system, code) per coding (rows without a code or system are useless for matching, dropped);
- reference (R4 only uses it first, in DocumentReference `relationship`): `Type/id` of a local target,
  else the URL, in c1_code with c1_system NULL;
- quantity: value, system, and the code or, lacking one, the unit in c2_code (one column serves both
  `|system|code` and unit-only search values); a Range gives low and high;
- date: low/high of the value's range; string: the normalised value; number: the value.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cache

from ..definitions import loader
from . import compile as fhir_compile
from . import date, fhirpath, number, quantity, reference, string, token
from .compile import converter_for

# R4 publishes DocumentReference `relationship` with the two component expressions swapped: its
# component `relatesto` (a reference, DocumentReference.relatesTo.target) is given `code`, and
# `relation` (a token, DocumentReference.relatesTo.code) is given `target` (fixed in R4B/R5).
_ERRATA = {("DocumentReference", "relationship"): ("target", "code")}

_CONVERTERS = {
    "token": token.CODE_CONVERTERS,
    "reference": reference.CONVERTERS,
    "quantity": quantity.CONVERTERS,
    "date": date.CONVERTERS,
    "string": string.CONVERTERS,
    "number": number.CONVERTERS,
}


def _token_values(rows: list[tuple]) -> list[tuple]:
    return [(r[0], r[1]) for r in rows if r[0] or r[1]]


def _reference_values(rows: list[tuple]) -> list[tuple]:
    return [(None, (f"{r[0]}/{r[1]}" if r[0] else r[2])[:255]) for r in rows]


def _quantity_values(rows: list[tuple]) -> list[tuple]:
    return [(r[0], r[1], r[2] or r[3]) for r in rows]


def _string_values(rows: list[tuple]) -> list[tuple]:
    return [(r[0],) for r in rows]


def _same(rows: list[tuple]) -> list[tuple]:
    return rows


_VALUES = {
    "token": _token_values,
    "reference": _reference_values,
    "quantity": _quantity_values,
    "date": _same,
    "string": _string_values,
    "number": _same,
}


def _place(kind: str, value: tuple, position: int) -> tuple:
    """The value's columns among (c2_system, c2_code, c2_number, c2_low, c2_high, c2_string) or c3."""
    if position == 2:
        return (value[0],)  # R4's third components are all numbers
    if kind in ("token", "reference"):
        return (value[0], value[1], None, None, None, None)
    if kind == "quantity":
        return (value[1], value[2], value[0], None, None, None)
    if kind == "date":
        return (None, None, None, value[0], value[1], None)
    if kind == "string":
        return (None, None, None, None, None, value[0])
    return (None, None, value[0], None, None, None)  # number


@dataclass(frozen=True, slots=True, eq=False)
class _Component:
    kind: str
    parts: tuple  # (Branch, row converter)
    fallback: tuple[str, ...]

    def values(self, element: object, body: dict) -> list[tuple]:
        rows: list[tuple] = []
        for branch, convert in self.parts:
            found = branch.run([body] if branch.from_root else [element])
            if found:
                rows.extend(convert(found))
        for expression in self.fallback:
            for type_code, value in fhirpath.evaluate(expression, body, focus=element):
                convert = converter_for(_CONVERTERS[self.kind], type_code)
                if convert is not None:
                    rows.extend(convert([value]))
        return list(dict.fromkeys(_VALUES[self.kind](rows))) if rows else rows


@dataclass(frozen=True, slots=True)
class CompiledComposite:
    code: str
    roots: tuple  # (Branch, (component, ...)) per root branch

    def rows(self, body: dict, memo: dict) -> list[tuple]:
        """Rows of this composite; `memo` holds component values already computed for an element
        during this extraction (the Observation composites share their `code` component)."""
        out: list[tuple] = []
        for branch, components in self.roots:
            for element in branch.run([body]):
                value_lists = []
                # The value component is the one most often absent: look at it first.
                for component in reversed(components):
                    key = (id(element), id(component))
                    values = memo.get(key)
                    if values is None:
                        values = memo[key] = component.values(element, body)
                    if not values:
                        break
                    value_lists.append(values)
                else:
                    value_lists.reverse()
                    out.extend(_combine([c.kind for c in components], value_lists))
        return out


def _combine(kinds: list[str], value_lists: list[list[tuple]]) -> list[tuple]:
    rows = []
    for combination in itertools.product(*value_lists):
        first = combination[0]
        columns = (first[0], first[1]) + _place(kinds[1], combination[1], 1)
        columns += _place(kinds[2], combination[2], 2) if len(combination) > 2 else (None,)
        rows.append(columns)
    return rows


@cache
def _component(resource_type: str, context_type: str, kind: str, expression: str) -> _Component:
    parts, fallback = fhir_compile.compile_expression(expression, resource_type, context_type)
    converted = tuple(
        (b, convert) for b in parts if (convert := converter_for(_CONVERTERS[kind], b.leaf)) is not None
    )
    return _Component(kind, converted, fallback)


def compile_composite(resource_type: str, param: loader.SearchParam) -> CompiledComposite | None:
    """None when the composite cannot be indexed: a component without a usable definition, or a
    root expression outside the compiled subset (none in R4)."""
    branches, fallback = fhir_compile.compile_expression(param.expression, resource_type)
    if fallback:
        return None
    expressions = _ERRATA.get((resource_type, param.code)) or tuple(e for _, e in param.components)
    kinds = []
    for url, _ in param.components:
        definition = loader.search_parameter_by_url(url)
        if definition is None or definition.type not in _VALUES:
            return None
        kinds.append(definition.type)
    if kinds[0] not in ("token", "reference"):
        return None
    roots = tuple(
        (
            branch,
            tuple(
                _component(resource_type, branch.leaf, kind, expression)
                for kind, expression in zip(kinds, expressions, strict=True)
            ),
        )
        for branch in branches
    )
    return CompiledComposite(param.code, roots)
