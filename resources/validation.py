"""Structural validation of FHIR R4 resources in JSON form against the official StructureDefinitions.

Rules implemented (FHIR R4 JSON representation, https://hl7.org/fhir/R4/json.html):

- `resourceType` names a concrete resource type (https://hl7.org/fhir/R4/json.html#resources);
  unknown properties are refused at every level; choice elements `value[x]` appear as `valueQuantity`
  etc. with one of the allowed type suffixes and at most one variant
  (https://hl7.org/fhir/R4/formats.html#choice);
- cardinality: repeating elements are non-empty JSON arrays, single ones are not arrays, min >= 1
  elements are present (https://hl7.org/fhir/R4/json.html#arrays, https://hl7.org/fhir/R4/conformance-rules.html#cardinality);
- primitive values have the right JSON kind and match the regex of their datatype
  (https://hl7.org/fhir/R4/datatypes.html#primitive), strings have non-whitespace content, integers
  are 32-bit; `null` and empty objects/arrays are refused;
- primitive extensions in `_name` siblings, array-aligned with `null` placeholders
  (https://hl7.org/fhir/R4/json.html#primitive);
- complex datatypes and backbone elements recurse; `Resource`-typed elements (contained,
  Bundle.entry.resource, Parameters.parameter.resource) are validated as resources of their own type;
- required bindings on `code` elements, with value sets expanded at generation time
  (https://hl7.org/fhir/R4/terminologies.html#required); value sets that cannot be enumerated
  locally (filters, external code systems) are not checked.

Invariants (FHIRPath constraints) and profiles are out of scope.

The definitions are compiled lazily, once per structure, into plain dicts and tuples so the hot loop
only does dict lookups and `type()` identity checks; paths for diagnostics are built only for
recursion and on error.
"""

from __future__ import annotations

import re
from decimal import Decimal

from resources.definitions import primitive_types, resource_types, type_schema
from resources.outcomes import Issue

MAX_ISSUES = 100

# Property kinds, dispatched on in the hot loop.
_STR, _BOOL, _INT, _DEC, _XHTML, _COMPLEX, _RESOURCE, _PRIM_EXT, _RESOURCE_TYPE = range(9)

# https://hl7.org/fhir/R4/datatypes.html#integer: integers are 32-bit signed; positiveInt starts at 1
# and unsignedInt at 0 (their regexes say the same for the text form).
_INT_MAX = 2**31 - 1
_INT_RANGES = {"integer": (-(2**31), _INT_MAX), "unsignedInt": (0, _INT_MAX), "positiveInt": (1, _INT_MAX)}


# "Non-whitespace content" uses the XML notion of whitespace that FHIR primitives inherit
# (https://www.w3.org/TR/xml/#NT-S), like the ASCII-only \s of the HL7 regexes: a no-break space
# is content.
_XML_WS = " \t\r\n"


class _TooManyIssues(Exception):
    pass


class _Codes(frozenset):
    """Codes of a required value set, remembering its URL for diagnostics."""

    __slots__ = ("url",)

    def __new__(cls, codes, url: str):
        self = super().__new__(cls, codes)
        self.url = url
        return self


class _Struct:
    """A structure compiled for validation.

    props: JSON property -> (kind, target, repeats, codes, choice_group, type_code)
      target: for strings the compiled regex `fullmatch` (or None), for integers the (lo, hi) range,
              for complex the structure name, for `_name` the primitive property name;
      choice_group: the choice element name for `value[x]` variants, else None.
    required: (element name, JSON properties any of which satisfies it)
    """

    __slots__ = ("name", "props", "required", "choices")

    def __init__(self, name: str, props: dict, required: tuple, choices: dict):
        self.name = name
        self.props = props
        self.required = required
        self.choices = choices


_structs: dict[str, _Struct] = {}
_prim_cache: dict[str, tuple] = {}
_value_sets: dict[str, _Codes] = {}


def _value_set(url: str, codes: frozenset[str]) -> _Codes:
    found = _value_sets.get(url)
    if found is None:
        found = _value_sets[url] = _Codes(codes, url)
    return found


def _primitive(type_code: str) -> tuple:
    """(kind, target) for a primitive type."""
    found = _prim_cache.get(type_code)
    if found is None:
        schema = type_schema(type_code)
        if type_code == "xhtml":
            found = (_XHTML, None)
        elif schema.json_kind == "boolean":
            found = (_BOOL, None)
        elif schema.json_kind == "integer":
            found = (_INT, _INT_RANGES[type_code])
        elif schema.json_kind == "decimal":
            found = (_DEC, None)
        else:
            found = (_STR, _matcher(schema.regex) if schema.regex else None)
        _prim_cache[type_code] = found
    return found


def _matches_string(value: str) -> bool | None:
    # `[ \r\n\t\S]+` with ASCII \S admits every character except \v and \f.
    return True if value and "\x0b" not in value and "\x0c" not in value else None


_BASE64_CHARS = re.compile(r"[0-9a-zA-Z+/=\s]+", re.ASCII).fullmatch


def _matches_base64(value: str) -> bool | None:
    # `(\s*([0-9a-zA-Z\+/=]){4}\s*)+`: whitespace-separated runs of alphabet characters, each run a
    # multiple of 4 long. The regex backtracks through every 4-character group (~0.15 s per MB);
    # this is linear and C-speed. Once the character check passed, str.split() only sees ASCII
    # whitespace, the same set as the regex's \s.
    if _BASE64_CHARS(value) is None:
        return None
    runs = value.split()
    if runs and all(len(run) % 4 == 0 for run in runs):
        return True
    return None


# Equivalent predicates for HL7 regexes on hot or potentially huge values (strings are everywhere,
# base64Binary carries attachments). Keyed by the regex text so that a change in the definitions
# falls back to the regex itself; resources/tests/test_validation.py checks the equivalence.
_FAST_MATCHERS = {
    r"[ \r\n\t\S]+": _matches_string,
    r"(\s*([0-9a-zA-Z\+/=]){4}\s*)+": _matches_base64,
}


def _non_capturing(regex: str) -> str:
    """Rewrite plain `(` groups as `(?:`, leaving escapes and character classes alone."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(regex):
        ch = regex[i]
        if ch == "\\":
            out.append(regex[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            # A `]` right after `[` or `[^` is a literal member of the class.
            j = i + 1 + (regex[i + 1 : i + 2] == "^")
            if regex[j : j + 1] == "]":
                out.append(regex[i : j + 1])
                i = j + 1
                continue
        elif ch == "(" and regex[i + 1 : i + 2] != "?":
            ch = "(?:"
        out.append(ch)
        i += 1
    return "".join(out)


def _matcher(regex: str):
    """A fullmatch-like callable (None when the value does not match) for an HL7 regex."""
    fast = _FAST_MATCHERS.get(regex)
    if fast is not None:
        return fast
    # HL7 regexes follow XML Schema / Java semantics, where \s and \S are ASCII-only: a no-break
    # space inside a value is content, not whitespace. Groups are never referenced, so making them
    # non-capturing only saves the bookkeeping (~25% on dateTime).
    return re.compile(_non_capturing(regex), re.ASCII).fullmatch


def _compile(name: str) -> _Struct:
    schema = type_schema(name)
    props: dict[str, tuple] = {}
    required: list[tuple[str, tuple[str, ...]]] = []
    choices: dict[str, tuple[str, ...]] = {}
    prims = primitive_types()
    for element in schema.elements.values():
        repeats = element.repeats
        satisfying: list[str] = []
        group = element.name if element.choice else None
        for type_code in element.types:
            key = element.json_key(type_code)
            satisfying.append(key)
            if type_code in prims:
                kind, target = _primitive(type_code)
                codes = None
                if type_code == "code" and element.codes is not None:
                    codes = _value_set(element.binding, element.codes)
                props[key] = (kind, target, repeats, codes, group, type_code)
                # The `_name` sibling carries id/extensions of the primitive (json.html#primitive).
                props["_" + key] = (_PRIM_EXT, key, repeats, None, group, type_code)
                satisfying.append("_" + key)
            elif type_code == "Resource":
                props[key] = (_RESOURCE, None, repeats, None, group, type_code)
            else:
                props[key] = (_COMPLEX, type_code, repeats, None, group, type_code)
        if element.choice:
            choices[element.name] = element.types
        if element.min >= 1:
            required.append((element.name, tuple(satisfying)))
    if schema.kind == "resource":
        props["resourceType"] = (_RESOURCE_TYPE, None, False, None, None, "string")
    struct = _Struct(name, props, tuple(required), choices)
    _structs[name] = struct
    return struct


class _Ctx:
    __slots__ = ("issues",)

    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def add(self, code: str, message: str, path: str | None) -> None:
        self.issues.append(Issue(code, message, expression=(path,) if path else ()))
        if len(self.issues) >= MAX_ISSUES:
            raise _TooManyIssues


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if type(value) is bool:
        return "a boolean"
    if type(value) is int:
        return "an integer"
    if isinstance(value, (float, Decimal)):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _check_primitive(value, kind: int, target, codes, type_code: str, path: str, ctx: _Ctx) -> None:
    """Check one primitive value that is not a str matched by the fast path in _object()."""
    if kind == _STR:
        if type(value) is not str:
            ctx.add("value", f"Expected a JSON string ({type_code}), got {_describe(value)}", path)
        elif not value.strip(_XML_WS):
            ctx.add("value", f"A {type_code} must have non-whitespace content", path)
        elif target is not None and target(value) is None:
            ctx.add("value", f"Invalid {type_code} value {value[:100]!r}", path)
        elif codes is not None and value not in codes:
            ctx.add(
                "code-invalid", f"Code {value[:100]!r} is not in the required value set {codes.url}", path
            )
    elif kind == _BOOL:
        if type(value) is not bool:
            ctx.add("value", f"Expected a JSON boolean (true/false), got {_describe(value)}", path)
    elif kind == _INT:
        if type(value) is not int:
            ctx.add("value", f"Expected a JSON integer number ({type_code}), got {_describe(value)}", path)
        elif not target[0] <= value <= target[1]:
            ctx.add("value", f"{type_code} {value} out of range [{target[0]}, {target[1]}]", path)
    elif kind == _DEC:
        t = type(value)
        if t is Decimal:
            if not value.is_finite():
                ctx.add("value", "A decimal must be a finite number", path)
        elif t is not int and t is not float:
            ctx.add("value", f"Expected a JSON number (decimal), got {_describe(value)}", path)
    elif kind == _XHTML:
        if type(value) is not str or not value.startswith("<div"):
            # https://hl7.org/fhir/R4/narrative.html#xhtml: the root is an xhtml <div>.
            ctx.add("value", "Narrative div must be an XHTML string starting with <div", path)


def _unknown(struct: _Struct, key: str, path: str, ctx: _Ctx) -> None:
    where = f"{path}.{key}"
    for base, types in struct.choices.items():
        if key.startswith(base) and key[len(base) : len(base) + 1].isupper():
            allowed = ", ".join(base + t[0].upper() + t[1:] for t in types)
            ctx.add(
                "structure", f"Invalid type for choice element {base}[x]: '{key}' (allowed: {allowed})", where
            )
            return
    ctx.add("structure", f"Unknown property '{key}' in {struct.name}", where)


def _object(obj: dict, struct: _Struct, path: str, ctx: _Ctx) -> None:
    if not obj:
        ctx.add("structure", "Empty objects are not allowed", path)
        return
    props = struct.props
    seen_choice: dict[str, str] | None = None
    for key, value in obj.items():
        prop = props.get(key)
        if prop is None:
            _unknown(struct, key, path, ctx)
            continue
        kind, target, repeats, codes, group, type_code = prop
        if group is not None:
            if seen_choice is None:
                seen_choice = {}
            # `valueString` and `_valueString` are the same variant; two different variants are not.
            variant = key[1:] if kind == _PRIM_EXT else key
            other = seen_choice.get(group)
            if other is None:
                seen_choice[group] = variant
            elif other != variant:
                ctx.add(
                    "structure",
                    f"Only one of {group}[x] is allowed, found '{other}' and '{variant}'",
                    f"{path}.{key}",
                )
        if repeats:
            if type(value) is not list:
                ctx.add(
                    "structure",
                    f"'{key}' repeats and must be an array, got {_describe(value)}",
                    f"{path}.{key}",
                )
                continue
            if not value:
                ctx.add("structure", f"Empty array for '{key}' is not allowed", f"{path}.{key}")
                continue
            if kind == _STR:
                for i, item in enumerate(value):
                    # Fast path: the common valid string.
                    if type(item) is str and item and (target is None or target(item) is not None):
                        if (codes is None or item in codes) and item.strip(_XML_WS):
                            continue
                    if item is None:
                        _null_in_array(obj, key, i, path, ctx)
                    else:
                        _check_primitive(item, kind, target, codes, type_code, f"{path}.{key}[{i}]", ctx)
            elif kind == _COMPLEX:
                sub = _structs.get(target) or _compile(target)
                for i, item in enumerate(value):
                    if type(item) is dict:
                        _object(item, sub, f"{path}.{key}[{i}]", ctx)
                    else:
                        _not_object(item, f"{path}.{key}[{i}]", ctx)
            elif kind == _PRIM_EXT:
                _prim_ext_array(obj, key, value, target, path, ctx)
            elif kind == _RESOURCE:
                for i, item in enumerate(value):
                    _resource(item, f"{path}.{key}[{i}]", ctx)
            else:
                for i, item in enumerate(value):
                    if item is None:
                        _null_in_array(obj, key, i, path, ctx)
                    else:
                        _check_primitive(item, kind, target, codes, type_code, f"{path}.{key}[{i}]", ctx)
            continue
        if type(value) is list:
            ctx.add("structure", f"'{key}' does not repeat and must not be an array", f"{path}.{key}")
            continue
        if kind == _STR:
            if type(value) is str and value and (target is None or target(value) is not None):
                if (codes is None or value in codes) and value.strip(_XML_WS):
                    continue
            if value is None:
                ctx.add("structure", f"Null value for '{key}' is not allowed", f"{path}.{key}")
            else:
                _check_primitive(value, kind, target, codes, type_code, f"{path}.{key}", ctx)
        elif kind == _COMPLEX:
            if type(value) is dict:
                _object(value, _structs.get(target) or _compile(target), f"{path}.{key}", ctx)
            else:
                _not_object(value, f"{path}.{key}", ctx)
        elif kind == _RESOURCE_TYPE:
            continue
        elif kind == _PRIM_EXT:
            if type(value) is dict:
                _object(value, _structs.get("Element") or _compile("Element"), f"{path}.{key}", ctx)
            else:
                _not_object(value, f"{path}.{key}", ctx)
        elif kind == _RESOURCE:
            _resource(value, f"{path}.{key}", ctx)
        elif value is None:
            ctx.add("structure", f"Null value for '{key}' is not allowed", f"{path}.{key}")
        else:
            _check_primitive(value, kind, target, codes, type_code, f"{path}.{key}", ctx)
    for name, keys in struct.required:
        for k in keys:
            if k in obj:
                break
        else:
            ctx.add(
                "required", f"Missing required element '{name}' (min 1) in {struct.name}", f"{path}.{name}"
            )


def _not_object(value, path: str, ctx: _Ctx) -> None:
    if value is None:
        ctx.add("structure", "Null value is not allowed", path)
    else:
        ctx.add("structure", f"Expected an object, got {_describe(value)}", path)


def _null_in_array(obj: dict, key: str, i: int, path: str, ctx: _Ctx) -> None:
    # A null only holds the place of a value whose extensions are in the `_key` array.
    ext = obj.get("_" + key)
    if type(ext) is list and i < len(ext) and type(ext[i]) is dict:
        return
    ctx.add(
        "structure", f"Null in '{key}' without extensions at the same index of '_{key}'", f"{path}.{key}[{i}]"
    )


def _prim_ext_array(obj: dict, key: str, value: list, prim_key: str, path: str, ctx: _Ctx) -> None:
    element = _structs.get("Element") or _compile("Element")
    values = obj.get(prim_key)
    if values is not None and type(values) is list and len(values) != len(value):
        ctx.add(
            "structure",
            f"'{key}' must have the same length as '{prim_key}' ({len(value)} != {len(values)})",
            f"{path}.{key}",
        )
    for i, item in enumerate(value):
        if type(item) is dict:
            _object(item, element, f"{path}.{key}[{i}]", ctx)
        elif item is None:
            if not (type(values) is list and i < len(values) and values[i] is not None):
                ctx.add(
                    "structure",
                    f"Null in '{key}' without a value at the same index of '{prim_key}'",
                    f"{path}.{key}[{i}]",
                )
        else:
            ctx.add("structure", f"Expected an object or null, got {_describe(item)}", f"{path}.{key}[{i}]")


def _resource(body, path: str | None, ctx: _Ctx) -> None:
    """Validate a resource; `path` is None at the root, else the location of a nested resource."""
    if type(body) is not dict:
        ctx.add("structure", f"A resource must be a JSON object, got {_describe(body)}", path)
        return
    rt = body.get("resourceType")
    if rt is None:
        ctx.add("required", "Missing resourceType", f"{path}.resourceType" if path else "resourceType")
        return
    if type(rt) is not str or rt not in resource_types():
        shown = rt if type(rt) is str else _describe(rt)
        ctx.add(
            "invalid",
            f"Unknown resourceType '{shown}' (not a concrete FHIR R4 resource type)",
            f"{path}.resourceType" if path else "resourceType",
        )
        return
    _object(body, _structs.get(rt) or _compile(rt), path or rt, ctx)


def validate_resource(body: dict) -> list[Issue]:
    """Structural errors of a parsed FHIR R4 JSON resource; an empty list when it is valid.

    `body` comes from `simplejson.loads(text, use_decimal=True)` (decimals as Decimal).
    At most MAX_ISSUES issues are reported.
    """
    ctx = _Ctx()
    try:
        _resource(body, None, ctx)
    except _TooManyIssues:
        ctx.issues.append(Issue("too-costly", f"Validation stopped after {MAX_ISSUES} issues"))
    except RecursionError:
        ctx.issues.append(Issue("structure", "Resource is too deeply nested"))
    return ctx.issues
