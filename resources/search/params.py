"""Reading search parameter names and values (https://hl7.org/fhir/R4/search.html).

A name is `code[:modifier][.chained-name]` (#modifiers, #chaining) or `_has:Type:reference:name`
(#has); a value is a comma-separated list of alternatives (#combining) in which `\\,` `\\$` `\\|` and
`\\\\` stand for the literal characters (#escaping); ordered types start with a prefix (#prefix).
The exceptions here are sorted into OperationOutcomes by criteria.py.
"""

from __future__ import annotations

from dataclasses import dataclass

# Parameters that shape the result rather than select resources (search.html#all); the result side
# handles them, so they are neither criteria nor unknown.
RESULT_PARAMS = frozenset(
    {
        "_count",
        "_sort",
        "_include",
        "_revinclude",
        "_summary",
        "_elements",
        "_total",
        "_page",
        "_format",
        "_pretty",
        "_contained",
        "_containedType",
    }
)

PREFIXES = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})

_ESCAPABLE = frozenset({",", "$", "|", "\\"})


class UnknownParameter(Exception):
    """The name is not a parameter this server can evaluate: ignored, or refused under strict handling."""


class InvalidSearch(Exception):
    """A malformed value or modifier: always a 400 naming the parameter and the value."""

    issue_code = "invalid"


class UnsupportedModifier(InvalidSearch):
    """A modifier the spec defines for the type but this server refuses rather than approximates."""

    issue_code = "not-supported"


@dataclass(frozen=True)
class Name:
    code: str
    modifier: str | None
    chain: str | None  # what follows the first '.', itself a name on the target type


def parse_name(name: str) -> Name:
    head, dot, rest = name.partition(".")
    code, colon, modifier = head.partition(":")
    if colon and not modifier:
        raise InvalidSearch("empty modifier")
    if dot and not rest:
        raise InvalidSearch("empty chained parameter")
    return Name(code, modifier if colon else None, rest if dot else None)


def split_escaped(text: str, separator: str) -> list[str]:
    """Split on `separator` where it is not escaped; the parts keep their escapes."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPABLE:
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def alternatives(value: str) -> list[str]:
    """The comma-separated alternatives of a value (still escaped); an empty one is malformed."""
    parts = split_escaped(value, ",")
    if any(not part for part in parts):
        raise InvalidSearch("empty value")
    return parts


def split_prefix(value: str) -> tuple[str, str]:
    """(prefix, rest); no prefix means `eq`. Values of ordered types never start with letters, so
    unknown letters are left in place for the value parser to refuse."""
    if value[:2] in PREFIXES:
        return value[:2], value[2:]
    return "eq", value


def parse_bool(value: str) -> bool:
    if value == "true":
        return True
    if value == "false":
        return False
    raise InvalidSearch("expected 'true' or 'false'")
