"""Compilation of the R4 SearchParameter expressions into direct accessors over the stored JSON.

A SearchParameter's `expression` (https://hl7.org/fhir/R4/searchparameter-definitions.html#SearchParameter.expression)
is FHIRPath (https://hl7.org/fhirpath/N1/). Nearly all R4 expressions are plain element paths, possibly
narrowed by a type (`Observation.value as Quantity`, `.as(T)`, `.ofType(T)`), a reference target type
(`.where(resolve() is Patient)`), an equality on a child (`.where(system='email')`) or an index
(`Bundle.entry[0]`). Those are compiled here, once per (resource type, expression), into a sequence of
steps over the JSON dict, typed with the StructureDefinitions: a choice element `value[x]` becomes its
JSON keys (`valueQuantity`, ... https://hl7.org/fhir/R4/json.html#choice), each step knows the FHIR type
it yields, so the value converters are chosen at compile time and never sniff the data.

Whatever this subset does not cover is evaluated by fhirpathpy (see fhirpath.py), per expression part.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from ..definitions import loader
from . import reference

# fhirpathpy's R4 model holds the FHIRPath type hierarchy (code is a string, Age a Quantity...);
# using it keeps `as`/`ofType` here equal to what fhirpathpy would do.
from .fhirpath import TYPE_PARENTS

Runner = Callable[[list], list]


class Unsupported(Exception):
    """The expression part is outside the compiled subset; fhirpathpy evaluates it instead."""


@dataclass(frozen=True, slots=True)
class Branch:
    """One typed way through the JSON: `run([start])` returns the values, all of FHIR type `leaf`."""

    steps: tuple[tuple, ...]
    leaf: str
    run: Runner
    from_root: bool = False  # `%resource....` in a composite component: run from the resource


def split_union(expression: str) -> list[str]:
    """Top-level `|` parts of an expression (a `|` inside parentheses or quotes is not a separator)."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(expression):
        if ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


# --- parsing the subset --------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<string>'(?:[^'\\]|\\.)*')"
    r"|(?P<number>\d+)"
    r"|(?P<name>%?[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<punct>[().\[\]=])"
    r")"
)


def _tokenize(text: str) -> list[str]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise Unsupported(text)
        tokens.append(match.group().strip())
        pos = match.end()
    return tokens


class _Parser:
    """Recursive descent over: `(` path `as` T `)` (`.` step)* | path, where a path is a root name
    followed by steps: name, name`[`n`]`, `as(T)`, `ofType(T)`, `first()`,
    `where(resolve() is T)` and `where(name = 'literal')`."""

    def __init__(self, text: str):
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self, offset: int = 0) -> str | None:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise Unsupported(" ".join(self.tokens))
        self.pos += 1
        return token

    def parse(self) -> tuple[str, list[tuple]]:
        root, steps = self.path()
        if self.peek() is not None:
            raise Unsupported(" ".join(self.tokens))
        return root, steps

    def path(self) -> tuple[str, list[tuple]]:
        if self.peek() == "(":
            self.take("(")
            root, steps = self.path()
            self.take("as")
            steps.append(("as", self.take()))
            self.take(")")
        else:
            root = self.take()
            if not (root[0].isalpha() or root == "%resource") or root in ("as", "is"):
                raise Unsupported(root)
            steps = []
        while self.peek() == ".":
            self.take(".")
            steps.append(self.step())
        return root, steps

    def step(self) -> tuple:
        name = self.take()
        if self.peek() != "(":
            if self.peek() == "[":
                self.take("[")
                index = self.take()
                if not index.isdigit():
                    raise Unsupported(index)
                self.take("]")
                return ("index-key", name, int(index))
            return ("key", name)
        self.take("(")
        if name in ("as", "ofType"):
            type_name = self.take()
            self.take(")")
            return ("as", type_name)
        if name == "first":
            self.take(")")
            return ("index", 0)
        if name == "where":
            if self.peek() == "resolve":
                self.take("resolve")
                self.take("(")
                self.take(")")
                self.take("is")
                type_name = self.take()
                self.take(")")
                return ("refers", type_name)
            child = self.take()
            self.take("=")
            literal = self.take()
            if not literal.startswith("'"):
                raise Unsupported(literal)
            self.take(")")
            return ("eq", child, literal[1:-1])
        raise Unsupported(name)


# --- typing the steps ----------------------------------------------------------------------------


def _type_name(name: str) -> str:
    """FHIR type code for a type named in an expression; R4 writes `value.as(DateTime)` once."""
    if name.startswith("FHIR."):
        name = name[5:]
    if name in loader.primitive_types():
        return name
    lowered = name[0].lower() + name[1:]
    if lowered in loader.primitive_types():
        return lowered
    return name


def is_a(type_code: str, wanted: str) -> bool:
    while type_code is not None:
        if type_code == wanted:
            return True
        type_code = TYPE_PARENTS.get(type_code)
    return False


def converter_for(converters: dict[str, Callable], leaf: str) -> Callable | None:
    """The converter registered for `leaf` or its nearest ancestor type (Age uses Quantity's)."""
    type_code = leaf
    while type_code is not None:
        found = converters.get(type_code)
        if found is not None:
            return found
        type_code = TYPE_PARENTS.get(type_code)
    return None


def _children(type_code: str, name: str) -> list[tuple[str, str]]:
    """(JSON key, FHIR type) pairs element `name` of `type_code` can appear as."""
    if type_code == "Resource":
        raise Unsupported(f"{name} of an untyped resource")
    element = loader.type_schema(type_code).elements.get(name)
    if element is None:
        return []
    if element.choice:
        return [(element.json_key(t), t) for t in element.types]
    return [(element.name, element.types[0])]


def compile_part(part: str, resource_type: str, context_type: str | None = None) -> list[Branch]:
    """Branches of one expression part, rooted at the resource (or at `context_type` for the relative
    expressions of composite components). Raises Unsupported outside the compiled subset."""
    root, steps = _Parser(part).parse()
    if context_type is not None and root != "%resource":
        # A relative expression: its first name is an element of the context, not a type.
        steps = [("key", root), *steps]
        start = context_type
    elif root == "%resource" or root in ("Resource", "DomainResource", resource_type):
        start = resource_type
    elif root[0].islower():
        # FHIRPath evaluates a bare name against the resource (R4 InsurancePlan `name | alias`).
        steps = [("key", root), *steps]
        start = resource_type
    else:
        return []  # a part for another base type
    cursors: list[tuple[tuple, str]] = [((), start)]
    for step in steps:
        kind = step[0]
        advanced: list[tuple[tuple, str]] = []
        for done, type_code in cursors:
            if kind in ("key", "index-key"):
                for key, child_type in _children(type_code, step[1]):
                    new = (*done, ("key", key))
                    if kind == "index-key":
                        new = (*new, ("index", step[2]))
                    advanced.append((new, child_type))
            elif kind == "as":
                if is_a(type_code, _type_name(step[1])):
                    advanced.append((done, type_code))
            elif kind == "refers":
                if type_code != "Reference":
                    raise Unsupported(f"resolve() on {type_code}")
                advanced.append(((*done, ("refers", step[1])), type_code))
            elif kind == "eq":
                advanced.append(((*done, step), type_code))
            elif kind == "index":
                advanced.append(((*done, step), type_code))
        cursors = advanced
    from_root = root == "%resource"
    return [Branch(done, type_code, _runner(done), from_root) for done, type_code in cursors]


# --- running the steps ---------------------------------------------------------------------------


def _key_step(key: str) -> Runner:
    def run(items: list) -> list:
        out: list = []
        for item in items:
            if type(item) is dict:
                value = item.get(key)
                if value is None:
                    continue
                if type(value) is list:
                    # Primitive arrays keep a null where only the `_key` extension has an entry.
                    out.extend(v for v in value if v is not None)
                else:
                    out.append(value)
        return out

    return run


def _refers_step(type_code: str) -> Runner:
    def run(items: list) -> list:
        return [item for item in items if reference.target_type(item) == type_code]

    return run


def _eq_step(name: str, literal: str) -> Runner:
    def run(items: list) -> list:
        return [item for item in items if type(item) is dict and item.get(name) == literal]

    return run


def _index_step(index: int) -> Runner:
    def run(items: list) -> list:
        return items[index : index + 1]

    return run


def _runner(steps: tuple[tuple, ...]) -> Runner:
    """A closure over the steps; the common case, keys only, avoids the per-step dispatch."""
    if not steps:
        return list
    if all(s[0] == "key" for s in steps):
        keys = tuple(s[1] for s in steps)
        if len(keys) == 1:
            (k1,) = keys

            def run1(items: list) -> list:
                if len(items) == 1:
                    value = items[0].get(k1) if type(items[0]) is dict else None
                    if value is None:
                        return []
                    if type(value) is list:
                        return [v for v in value if v is not None]
                    return [value]
                return key1(items)

            key1 = _key_step(k1)
            return run1
        functions = [_key_step(k) for k in keys]
    else:
        functions = []
        for step in steps:
            kind = step[0]
            if kind == "key":
                functions.append(_key_step(step[1]))
            elif kind == "refers":
                functions.append(_refers_step(step[1]))
            elif kind == "eq":
                functions.append(_eq_step(step[1], step[2]))
            elif kind == "index":
                functions.append(_index_step(step[1]))
    first, rest = functions[0], functions[1:]

    def run(items: list) -> list:
        items = first(items)
        for function in rest:
            if not items:
                return items
            items = function(items)
        return items

    return run


# `X.exists() and X != false` (R4 Patient `deceased`): true when X has a value other than false.
_PRESENT_NOT_FALSE = re.compile(r"(?P<path>.+)\.exists\(\)\s+and\s+(?P=path)\s*!=\s*false")


def _present_not_false(part: str, resource_type: str, context_type: str | None) -> list[Branch]:
    match = _PRESENT_NOT_FALSE.fullmatch(part)
    if match is None:
        raise Unsupported(part)
    inner = compile_part(match.group("path"), resource_type, context_type)
    runners = [b.run for b in inner]

    def run(items: list) -> list:
        values = [v for r in runners for v in r(items)]
        # FHIRPath: `{} and ...` is false; a dateTime is not equal to false, so `!= false` holds.
        return [bool(values) and values != [False]]

    steps = (("present-not-false", tuple(b.steps for b in inner)),)
    return [Branch(steps, "boolean", run)]


@cache
def compile_expression(expression: str, resource_type: str, context_type: str | None = None):
    """(branches, fallback parts) for a whole expression: the parts the subset covers are compiled,
    the others are returned as text for fhirpathpy."""
    branches: list[Branch] = []
    fallback: list[str] = []
    for part in split_union(expression):
        try:
            branches.extend(compile_part(part, resource_type, context_type))
        except Unsupported:
            try:
                branches.extend(_present_not_false(part, resource_type, context_type))
            except Unsupported:
                fallback.append(part)
    return tuple(branches), tuple(fallback)
