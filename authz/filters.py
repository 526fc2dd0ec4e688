"""Property filters: a rule redacts elements of the resources it lets a caller see.

A rule's `property-filters` list names element paths (`name`, `Patient.address.line`, `value`) and
what to do with them:

- `remove`: the element is deleted (an object or array it leaves empty goes too);
- `mask`: every text leaf under it becomes `***`; numbers, booleans, dates and times are deleted,
  so nothing of the original value survives (only the fact that there was one);
- `pseudonymize`: every text leaf under it becomes a stable keyed hash (HMAC-SHA256 keyed with
  settings.FHIR_PSEUDONYM_KEY, a key of its own, over the element path and the value; 128 bits as 32
  hex digits), so a caller can match the same value across responses without reading it. The path
  is the filter's path without its type plus the keys below it (`identifier.value`,
  `subject.reference`), so the same text in two elements gives two pseudonyms, while `subject` of an
  Observation and of a Condition still link. The `system`, `use` and `type` of each item are kept
  as they are: they say which namespace and kind an Identifier (or ContactPoint) belongs to, not
  who it identifies. Numbers, booleans, dates and times are deleted as for `mask`. Changing
  FHIR_PSEUDONYM_KEY changes every pseudonym;
- `generalize-year` / `generalize-month`: a date, dateTime or instant keeps only `YYYY` /
  `YYYY-MM` (of the date as written, so a dateTime's own time zone decides the day).

Paths go through arrays at every level (`address.line` is every line of every address). A choice
element is written without its type (`value` or `value[x]`, never `valueQuantity`) and covers every
type of it. The primitive-extension sibling of a filtered primitive (`_birthDate`) is always
deleted: it can carry the very value (the patient-birthTime extension lives there).

Marking (https://hl7.org/fhir/R4/security-labels.html): a resource a filter changed carries the
`REDACTED` security label from v3-ObservationValue in `meta.security`. (`SUBSETTED`, used for
`_summary`/`_elements`, is documented there as not suitable when information is removed for
security reasons.) The narrative (`text`) is deleted from every resource of a type the filters
apply to, whether or not the filtered elements are present: the generated XHTML repeats the values
and cannot be redacted element by element. Deleting it counts as a change, so it brings the label.

Blocking: a redacted value must not be recoverable by asking for it, e.g. `Patient?birthdate=1980-03-04`
on a rule that generalizes birthDate to the year, or `_sort=family` on one that removes names. So
every search parameter (and therefore `_sort` key, `_include` and `_revinclude`) whose FHIRPath
expression reads a filtered element, anything under it or anything above it, is refused for that
rule: `blocked_search_params` and `blocked_includes` compute those sets from the R4 SearchParameter
expressions. Expressions are read, not run: a small FHIRPath reader collects every element path an
expression touches (including inside `where(...)`); whatever it cannot understand is blocked.
`_text`, `_content` (full-text search over the narrative and the body) and `_query` have no
expression and are blocked whenever a filter applies to the type.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache, lru_cache

from django.conf import settings

from resources import definitions

from .validators.base import RuleError

ACTIONS = ("remove", "mask", "pseudonymize", "generalize-year", "generalize-month")
REDACTED_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
REDACTED_CODE = "REDACTED"
MASK = "***"

# Elements a filter may not touch: the id and meta keep references, versioning and the REDACTED
# label itself working; resourceType is what makes the JSON a resource at all.
_FORBIDDEN_ROOTS = frozenset({"id", "meta", "resourceType"})
_DATE_TYPES = frozenset({"date", "dateTime", "instant"})
# Primitives that are deleted by mask/pseudonymize rather than rewritten: a "***" or a hash in a
# date, time, number or boolean would be invalid FHIR, and any part of the value kept would leak.
_NOT_TEXT_TYPES = frozenset({"date", "dateTime", "instant", "time"})
# Kept by pseudonymize on each item of the element: namespace and kind, not the identifying value.
_PSEUDONYM_KEEP = frozenset({"system", "use", "type"})
_GENERALIZE_LENGTH = {"generalize-year": 4, "generalize-month": 7}
_DATE_VALUE = re.compile(r"\d{4}(-\d{2}(-\d{2}(T.*)?)?)?")
_SEGMENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\[x\])?")
_ENTRY_KEYS = frozenset({"path", "action"})

Path = tuple[str, ...]
# One concrete way a filter path exists on a type: the JSON keys to follow and the leaf's FHIR type.
Branch = tuple[Path, str]


@dataclass(frozen=True)
class PropertyFilter:
    """One `{path, action}` entry. `path` is as written, less any `[x]` (`name`, `Patient.name`)."""

    path: str
    action: str
    # Precomputed split of `path` (not part of equality/hash): the type prefix, if any, and the
    # element names below it.
    type_name: str | None = field(init=False, repr=False, compare=False)
    steps: Path = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = tuple(p.removesuffix("[x]") for p in self.path.split("."))
        has_type = bool(parts) and parts[0][:1].isupper()
        object.__setattr__(self, "type_name", parts[0] if has_type else None)
        object.__setattr__(self, "steps", parts[1:] if has_type else parts)

    def applies_to(self, resource_type: str) -> bool:
        """Whether the path names an element of `resource_type` (the prefix, if any, must match)."""
        if self.type_name is not None and self.type_name != resource_type:
            return False
        return bool(_branches(resource_type, self.steps))


# --- parsing --------------------------------------------------------------------------------------


def parse_property_filters(raw: object, resource_types: frozenset[str] | None) -> tuple[PropertyFilter, ...]:
    """The filters of a rule's `property-filters` list; `resource_types` are the rule's types (None:
    every type). Raises RuleError for anything that would not filter what its author expects."""
    if not isinstance(raw, list):
        raise RuleError("'property-filters' must be a list of {path, action} mappings")
    out: list[PropertyFilter] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        where = f"property-filters[{index}]"
        if not isinstance(entry, dict):
            raise RuleError(f"{where}: each filter is a mapping {{path: ..., action: ...}} (got {entry!r})")
        unknown = set(entry) - _ENTRY_KEYS
        if unknown:
            raise RuleError(
                f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} (allowed: path, action)"
            )
        missing = _ENTRY_KEYS - set(entry)
        if missing:
            raise RuleError(f"{where}: '{sorted(missing)[0]}' is required")
        path, action = entry["path"], entry["action"]
        if not isinstance(action, str) or action not in ACTIONS:
            raise RuleError(f"{where}: unknown action {action!r} (allowed: {', '.join(ACTIONS)})")
        if not isinstance(path, str) or not path.strip():
            raise RuleError(
                f"{where}: 'path' must be a non-empty element path such as 'name' or 'Patient.name'"
            )
        try:
            filt = _parse_one(path.strip(), action, resource_types)
        except RuleError as exc:
            raise RuleError(f"{where}: {exc}") from exc
        if filt.path in seen:
            raise RuleError(f"{where}: path '{filt.path}' is filtered twice")
        seen.add(filt.path)
        out.append(filt)
    return tuple(out)


def _parse_one(path: str, action: str, resource_types: frozenset[str] | None) -> PropertyFilter:
    segments = path.split(".")
    if not all(_SEGMENT.fullmatch(s) for s in segments):
        raise RuleError(f"'{path}' is not an element path (names separated by dots, such as 'address.line')")
    filt = PropertyFilter(".".join(s.removesuffix("[x]") for s in segments), action)
    known = definitions.resource_types()
    if filt.type_name is not None:
        if filt.type_name not in known:
            raise RuleError(f"'{filt.type_name}' in path '{path}' is not an R4 resource type")
        if resource_types is not None and filt.type_name not in resource_types:
            raise RuleError(
                f"path '{path}' names {filt.type_name}, which the rule does not cover "
                f"(it covers {', '.join(sorted(resource_types))})"
            )
        if not filt.steps:
            raise RuleError(f"path '{path}' names a resource type but no element of it")
        candidates = [filt.type_name]
    else:
        candidates = sorted(known if resource_types is None else resource_types)
    if filt.steps[0] in _FORBIDDEN_ROOTS:
        raise RuleError(
            f"'{filt.steps[0]}' cannot be filtered: id, meta and resourceType keep references, versions "
            "and the REDACTED label working"
        )
    branches = {t: _branches(t, _raw_steps(segments, filt)) for t in candidates}
    found = {t: b for t, b in branches.items() if b}
    if not found:
        hint = _choice_hint(candidates, filt.steps)
        on = (
            candidates[0]
            if len(candidates) == 1
            else "any of the rule's types"
            if resource_types
            else "any type"
        )
        raise RuleError(f"path '{path}' is not an element of {on}{hint}")
    if action in _GENERALIZE_LENGTH:
        wrong = sorted({leaf for b in found.values() for _, leaf in b} - _DATE_TYPES)
        if wrong:
            raise RuleError(
                f"{action} needs a date, dateTime or instant element; '{path}' can be {', '.join(wrong)}"
            )
    return filt


def _raw_steps(segments: list[str], filt: PropertyFilter) -> Path:
    """The element steps as written (with `[x]`), so that `[x]` on a non-choice element is refused."""
    return tuple(segments[1:] if filt.type_name is not None else segments)


def _choice_hint(types: list[str], steps: Path) -> str:
    """` (write 'value'...)` when the path uses a choice element's JSON name (`valueQuantity`)."""
    for type_name in types:
        current = [type_name]
        for step in steps:
            following = []
            for t in current:
                schema = _schema(t)
                if schema is None:
                    continue
                element = schema.elements.get(step)
                if element is not None:
                    following.extend(element.types)
                    continue
                by_key = schema.json_keys.get(step)
                if by_key is not None and by_key[0].choice:
                    return (
                        f" (write '{by_key[0].name}': a filter covers every type of the choice element "
                        f"{by_key[0].name}[x])"
                    )
            current = following
    return ""


@cache
def _schema(type_name: str) -> definitions.TypeSchema | None:
    if type_name in definitions.primitive_types():
        return None  # nothing below a primitive but its `_name` sibling, which filters delete anyway
    try:
        return definitions.type_schema(type_name)
    except KeyError:
        return None


@cache
def _branches(resource_type: str, steps: Path) -> tuple[Branch, ...]:
    """Every (JSON keys, leaf type) the element path `steps` can take in `resource_type`: a choice
    element fans out to one branch per type (`value` -> `valueQuantity`, `valueString`, ...).
    Empty when the path does not exist there. A step written `name[x]` must be a choice element."""
    current: list[Branch] = [((), resource_type)]
    for step in steps:
        name = step.removesuffix("[x]")
        following: list[Branch] = []
        for keys, type_name in current:
            schema = _schema(type_name)
            element = None if schema is None else schema.elements.get(name)
            if element is None or (step.endswith("[x]") and not element.choice):
                continue
            for child_type in element.types:
                branch = ((*keys, element.json_key(child_type)), child_type)
                if branch not in following:
                    following.append(branch)
        current = following
    return tuple(current) if steps else ()


# --- applying -------------------------------------------------------------------------------------

# What one filter does on one type: its action, the element path it names (without the type: the
# pseudonym key's context) and the JSON branches it follows.
_Step = tuple[str, str, tuple[Branch, ...]]


@lru_cache(maxsize=4096)
def _plan(resource_type: str, filters: tuple[PropertyFilter, ...]) -> tuple[_Step, ...]:
    plan = []
    for filt in filters:
        if filt.type_name is not None and filt.type_name != resource_type:
            continue
        branches = _branches(resource_type, filt.steps)
        if branches:
            plan.append((filt.action, ".".join(filt.steps), branches))
    return tuple(plan)


def apply_filters(resource: dict, filters: Iterable[PropertyFilter]) -> dict:
    """A new dict: `resource` with every filter that applies to its type carried out, its narrative
    deleted and the REDACTED label added when anything changed. The input is never modified;
    sub-objects no filter touched are shared with it (copy on write), so treat the result as
    read-only or copy it before changing it in place."""
    filters = tuple(filters)
    out, changed = _apply(resource, filters)
    if not changed:
        return dict(resource)
    return _mark_redacted(out)


def _apply(resource: dict, filters: tuple[PropertyFilter, ...]) -> tuple[dict, bool]:
    resource_type = resource.get("resourceType")
    plan = _plan(resource_type, filters) if isinstance(resource_type, str) else ()
    out = resource
    for action, element, branches in plan:
        for keys, leaf in branches:
            updated = _walk(out, keys, action, leaf, element)
            if updated is not None:
                out = updated
    if plan and "text" in out:
        out = dict(out)
        del out["text"]
    contained = out.get("contained")
    if isinstance(contained, list):
        # A contained resource is returned with its container: filter it by its own type.
        items, any_changed = [], False
        for item in contained:
            if isinstance(item, dict):
                new_item, item_changed = _apply(item, filters)
                any_changed |= item_changed
                items.append(new_item)
            else:
                items.append(item)
        if any_changed:
            out = dict(out)
            out["contained"] = items
            if "text" in out:  # the container's narrative may show the contained values
                del out["text"]
    return out, out is not resource


def redacted_parts(resource: dict, filters: Iterable[PropertyFilter]) -> list:
    """What the filters hide of `resource`, as stored: the values at each filtered element (in the
    filters' order, by position in repeating elements) and the narrative, which any filter removes.
    Two versions with equal parts differ only in what a reader under these filters sees."""
    resource_type = resource.get("resourceType")
    plan = _plan(resource_type, tuple(filters)) if isinstance(resource_type, str) else ()
    found: list = [
        _collect(resource, keys) for _action, _element, branches in plan for keys, _leaf in branches
    ]
    if plan:
        found.append(resource.get("text"))
    return found


def _collect(node: dict, keys: Path) -> object:
    key = keys[0]
    if len(keys) == 1:
        return [node.get(key), node.get("_" + key)]
    child = node.get(key)
    if isinstance(child, dict):
        return _collect(child, keys[1:])
    if isinstance(child, list):
        return [_collect(item, keys[1:]) if isinstance(item, dict) else None for item in child]
    return None


def _walk(node: dict, keys: Path, action: str, leaf: str, element: str) -> dict | None:
    """`node` with the action done at `keys` below it, as a new dict; None when nothing changed.
    An object or array the action leaves empty is deleted (FHIR JSON has no empty ones)."""
    key = keys[0]
    if len(keys) == 1:
        return _leaf(node, key, action, leaf, element)
    child = node.get(key)
    if isinstance(child, dict):
        new_child = _walk(child, keys[1:], action, leaf, element)
        if new_child is None:
            return None
        new = dict(node)
        if new_child:
            new[key] = new_child
        else:
            del new[key]
        return new
    if isinstance(child, list):
        items, changed = [], False
        for item in child:
            new_item = _walk(item, keys[1:], action, leaf, element) if isinstance(item, dict) else None
            if new_item is None:
                items.append(item)
            else:
                changed = True
                if new_item:
                    items.append(new_item)
        if not changed:
            return None
        new = dict(node)
        if items:
            new[key] = items
        else:
            del new[key]
        return new
    return None


def _leaf(node: dict, key: str, action: str, leaf: str, element: str) -> dict | None:
    shadow = "_" + key
    if key not in node and shadow not in node:
        return None
    new = dict(node)
    new.pop(shadow, None)  # the primitive's extensions may repeat the value
    if key in node:
        value = node[key]
        if action == "remove":
            result = _DROP
        elif action == "mask":
            result = _rewrite(value, leaf, _mask, frozenset(), element)
        elif action == "pseudonymize":
            result = _rewrite(value, leaf, pseudonym, _PSEUDONYM_KEEP, element)
        else:
            result = _generalize(value, _GENERALIZE_LENGTH[action])
        if result is _DROP:
            del new[key]
        else:
            if result == value and shadow not in node:
                return None
            new[key] = result
    return new


class _Drop:
    """Marker: the value is deleted."""


_DROP = _Drop()


PSEUDONYM_HEX_DIGITS = 32  # 128 bits: no birthday collisions within any realistic data set


def _mask(_text: str, _where: str) -> str:
    return MASK


def pseudonym(text: str, where: str) -> str:
    """The pseudonym of `text` found at element path `where` (`identifier.value`): HMAC-SHA256 under
    settings.FHIR_PSEUDONYM_KEY (never SECRET_KEY, whose rotation or disclosure concerns sessions and
    signing, not this) over the path and the value, 128 bits as 32 hex digits. The path is part of the
    input so that the same text in two elements (a phone number kept as an identifier) gives two
    pseudonyms: matching stays within one element. No NUL or newline occurs in a path, so the pair
    is encoded unambiguously."""
    message = f"{where}\x00{text}".encode()
    return hmac.new(_pseudonym_key(), message, hashlib.sha256).hexdigest()[:PSEUDONYM_HEX_DIGITS]


def _pseudonym_key() -> bytes:
    return settings.FHIR_PSEUDONYM_KEY.encode()


@cache
def _text_kind(type_name: str | None) -> str:
    """`text` (rewritten), `drop` (date/time/number/boolean) or `complex` for a FHIR type."""
    if type_name is None:
        return "unknown"
    if type_name in definitions.primitive_types():
        if type_name in _NOT_TEXT_TYPES:
            return "drop"
        return "text" if definitions.type_schema(type_name).json_kind == "string" else "drop"
    return "complex"


def _rewrite(
    value: object,
    type_name: str | None,
    rewrite: Callable[[str, str], str],
    keep: frozenset[str],
    where: str,
) -> object:
    """mask/pseudonymize: text leaves rewritten, other leaves dropped, typed with the
    StructureDefinitions where they can be (an unknown key is judged by its JSON value). `keep`
    names the keys of the top-level items copied as they are."""
    if isinstance(value, list):
        items = [r for v in value if (r := _rewrite(v, type_name, rewrite, keep, where)) is not _DROP]
        return items or _DROP
    kind = _text_kind(type_name)
    if kind == "text" or (kind == "unknown" and isinstance(value, str)):
        return rewrite(value, where) if isinstance(value, str) else _DROP
    if kind == "drop" or not isinstance(value, dict):
        return _DROP
    schema = None
    if kind == "complex":
        resource_type = value.get("resourceType")
        schema = _schema(resource_type if isinstance(resource_type, str) else type_name)
    out = {}
    for key, child in value.items():
        if key in keep or key == "resourceType":
            out[key] = child
            continue
        if key.startswith("_"):
            continue  # primitive extensions: dropped rather than rewritten
        found = None if schema is None else schema.json_keys.get(key)
        result = _rewrite(child, None if found is None else found[1], rewrite, frozenset(), f"{where}.{key}")
        if result is not _DROP:
            out[key] = result
    return out or _DROP


def _generalize(value: object, length: int) -> object:
    if isinstance(value, list):
        items = [r for v in value if (r := _generalize(v, length)) is not _DROP]
        return items or _DROP
    if isinstance(value, str) and _DATE_VALUE.fullmatch(value):
        return value[:length]
    return _DROP  # not a date as FHIR writes it: nothing of it is safe to keep


def _mark_redacted(resource: dict) -> dict:
    out = dict(resource)
    meta = dict(out.get("meta") or {})
    security = list(meta.get("security") or [])
    if not any(
        isinstance(c, dict) and c.get("system") == REDACTED_SYSTEM and c.get("code") == REDACTED_CODE
        for c in security
    ):
        security.append({"system": REDACTED_SYSTEM, "code": REDACTED_CODE})
    meta["security"] = security
    out["meta"] = meta
    return out


# --- blocking -------------------------------------------------------------------------------------


def blocked_search_params(resource_type: str, filters: Iterable[PropertyFilter]) -> frozenset[str]:
    """Codes of the search parameters of `resource_type` that read a filtered element (or anything
    under or above it); the same codes are refused as `_sort` keys. Empty for an unknown type."""
    return _blocked_params(resource_type, tuple(filters))


def blocked_includes(resource_type: str, filters: Iterable[PropertyFilter]) -> frozenset[str]:
    """`Type:code` of every reference parameter of `resource_type` that reads a filtered element.
    Refuse them as `_include` sources and as `_revinclude` (which reveals the same link from the
    other end). Wildcards (`*`, `Type:*`) must be checked against this set by the caller."""
    return _blocked_includes(resource_type, tuple(filters))


@lru_cache(maxsize=4096)
def _blocked_params(resource_type: str, filters: tuple[PropertyFilter, ...]) -> frozenset[str]:
    if resource_type not in definitions.resource_types():
        return frozenset()
    filtered = tuple(f.steps for f in filters if f.applies_to(resource_type))
    if not filtered:
        return frozenset()
    blocked = set()
    for code in definitions.search_parameters(resource_type):
        read = _param_reads(resource_type, code)
        if read is None or any(_related(r, f) for r in read for f in filtered):
            blocked.add(code)
    return frozenset(blocked)


@lru_cache(maxsize=4096)
def _blocked_includes(resource_type: str, filters: tuple[PropertyFilter, ...]) -> frozenset[str]:
    blocked = _blocked_params(resource_type, filters)
    if not blocked:
        return frozenset()
    params = definitions.search_parameters(resource_type)
    return frozenset(f"{resource_type}:{code}" for code in blocked if params[code].type == "reference")


def _related(read: Path, filtered: Path) -> bool:
    """Whether one path is the other or lies under it. An expression may name a choice element by
    its JSON name (`valueQuantity`), which counts as the element (`value`)."""
    return all(_same_step(a, b) for a, b in zip(read, filtered, strict=False))


def _same_step(read: str, element: str) -> bool:
    if read == element:
        return True
    n = len(element)
    return len(read) > n and read.startswith(element) and read[n].isupper()


@cache
def _param_reads(resource_type: str, code: str) -> frozenset[Path] | None:
    """Every element path (from the resource root) the parameter's expression reads; None when it
    has none (`_text`, `_content`, `_query`) or the reader cannot follow it: blocked either way."""
    param = definitions.search_parameters(resource_type)[code]
    if not param.expression:
        return None
    try:
        if param.type == "composite":
            # The expression only picks the context; the components say what is compared.
            reader = _Reader(param.expression, resource_type)
            contexts = reader.whole(frozenset({()}))
            reads = set(reader.reads)
            for _definition, component in param.components:
                sub = _Reader(component, resource_type)
                reads |= sub.whole(contexts) | sub.reads
            return frozenset(reads)
        reader = _Reader(param.expression, resource_type)
        return frozenset(reader.whole(frozenset({()})) | reader.reads)
    except _Unreadable:
        return None


# --- reading FHIRPath -----------------------------------------------------------------------------


class _Unreadable(Exception):
    """An expression outside what _Reader understands: the parameter is blocked."""


_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<string>'(?:[^'\\]|\\.)*')"
    r"|(?P<date>@[0-9T:.+\-Z]*)"
    r"|(?P<number>\d+(?:\.\d+)?)"
    r"|(?P<name>[%$]?[A-Za-z_][A-Za-z0-9_]*|`[^`]*`)"
    r"|(?P<op>!=|!~|<=|>=|[().\[\],|=~<>+\-*/&{}])"
    r")\s*"
)
_BINARY = frozenset(
    {"|", "=", "!=", "~", "!~", "<", ">", "<=", ">=", "+", "-", "*", "/", "&"}
    | {"and", "or", "xor", "implies", "in", "contains", "div", "mod"}
)
# Functions whose result is (part of) their input: the input flows on instead of being "read".
_PASS_THROUGH = frozenset(
    {"where", "first", "last", "tail", "single", "distinct", "skip", "take", "resolve", "trace"}
)
# Functions whose arguments are evaluated against each input item.
_LAMBDAS = frozenset({"where", "select", "exists", "all", "repeat"})
_LITERALS = frozenset({"true", "false"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Reader:
    """Collects the element paths a FHIRPath expression reads, as tuples of names from the root.

    Sets of paths stand for collections: `Patient.name.family` yields {('name', 'family')}; a
    function that narrows its input (`where`, `as`, `first`) passes the input on, the criteria of
    `where` are read relative to it, any other function reads its input. Operators (`|`, `and`,
    `!=`, ...) read both sides and yield their union, which is more than FHIRPath would but never
    less. Navigation itself reads nothing: `name.family` does not read `name.given`."""

    def __init__(self, text: str, resource_type: str):
        self.tokens = _tokenize(text)
        self.pos = 0
        self.resource_type = resource_type
        self.reads: set[Path] = set()

    def whole(self, context: frozenset[Path]) -> frozenset[Path]:
        out = self.expression(context)
        if self.pos != len(self.tokens):
            raise _Unreadable(self.tokens[self.pos])
        return out

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise _Unreadable(f"expected {expected or 'more'}, got {token}")
        self.pos += 1
        return token

    def expression(self, context: frozenset[Path]) -> frozenset[Path]:
        outputs = set(self.term(context))
        while self.peek() not in (None, ")", "]", ","):
            op = self.take()
            if op in ("is", "as"):
                self.type_specifier()
                if op == "is":
                    self.reads |= outputs
                    outputs = set()
                continue
            if op not in _BINARY:
                raise _Unreadable(op)
            right = self.term(context)
            if op != "|":
                self.reads |= outputs | right
            outputs |= right
        return frozenset(outputs)

    def term(self, context: frozenset[Path]) -> frozenset[Path]:
        token = self.take()
        outputs: frozenset[Path]
        if token == "(":
            outputs = self.expression(context)
            self.take(")")
        elif token in ("+", "-"):
            return self.term(context)
        elif token == "{":
            self.take("}")
            outputs = frozenset()
        elif token[0] in "'@" or token[0].isdigit() or token in _LITERALS:
            outputs = frozenset()
        elif token in ("%resource", "%rootResource", "%context"):
            outputs = frozenset({()})
        elif token == "$this":
            outputs = context
        elif token[0] in "%$":
            raise _Unreadable(token)
        elif not _NAME.fullmatch(token):
            raise _Unreadable(token)
        elif self.peek() == "(":
            outputs = self.function(token, context, context)
        elif token in (self.resource_type, "Resource", "DomainResource"):
            outputs = frozenset({()})
        elif token[0].isupper():
            raise _Unreadable(token)  # another type's path: not ours to guess
        else:
            outputs = frozenset(c + (token,) for c in context)
        while self.peek() in (".", "["):
            if self.take() == ".":
                name = self.take()
                if not _NAME.fullmatch(name):
                    raise _Unreadable(name)
                if self.peek() == "(":
                    outputs = self.function(name, outputs, context)
                else:
                    outputs = frozenset(o + (name,) for o in outputs)
            else:
                self.reads |= self.expression(context)
                self.take("]")
        return outputs

    def function(self, name: str, inputs: frozenset[Path], context: frozenset[Path]) -> frozenset[Path]:
        self.take("(")
        if name in ("as", "ofType", "is"):
            self.type_specifier()
            self.take(")")
            if name == "is":
                self.reads |= inputs
                return frozenset()
            return inputs
        # Criteria run against each input item; other arguments against the invocation's context.
        argument_context = inputs if name in _LAMBDAS else context
        arguments: set[Path] = set()
        if self.peek() != ")":
            arguments |= self.expression(argument_context)
            while self.peek() == ",":
                self.take(",")
                arguments |= self.expression(argument_context)
        self.take(")")
        self.reads |= arguments
        if name in _PASS_THROUGH:
            return inputs
        if name == "select":
            return frozenset(arguments)
        # Anything else (exists, empty, extension('url'), an unknown function) reads its input;
        # passing the input on keeps a following navigation on the safe side.
        self.reads |= inputs
        return inputs

    def type_specifier(self) -> None:
        name = self.take()
        if name in ("FHIR", "System") and self.peek() == ".":
            self.take(".")
            name = self.take()
        if not (name[0].isalpha() or name[0] == "`"):
            raise _Unreadable(name)


def _tokenize(text: str) -> list[str]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            if text[pos:].strip():
                raise _Unreadable(text[pos:])
            break
        token = match.group().strip()
        if token:
            tokens.append(token.strip("`") if token.startswith("`") else token)
        pos = match.end()
    return tokens
