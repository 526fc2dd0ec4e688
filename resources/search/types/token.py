"""token parameters (https://hl7.org/fhir/R4/search.html#token), `_tag` and `_security` included.

Forms: `code` (any system), `system|code`, `|code` (no system), `system|` (any code of the system).
Codes and systems match exactly (case-sensitive). Modifiers:

- `:text` starts-with on the normalised display text (Coding.display, CodeableConcept.text,
  Identifier.type.text), like a string search (#modifiers);
- `:not` keeps resources with no matching token at all, those without the element included;
- `:of-type` `type-system|type-code|value` on an Identifier, when the index carries the type;
- `:above` `:below` `:in` `:not-in` need a terminology server's subsumption and value-set
  expansion: refused with not-supported rather than answered as plain equality.
"""

from __future__ import annotations

from django.db.models import Q

from ...models import TokenIndex
from ..context import Context, Param, index_rows
from ..normalize import normalize_string
from ..params import InvalidSearch, UnsupportedModifier, split_escaped, unescape

_TERMINOLOGY = frozenset({"above", "below", "in", "not-in"})
_OF_TYPE_FIELDS = ("type_system", "type_code")


def token_condition(raw: str, *, system_field: str = "system", code_field: str = "code") -> Q:
    """One token alternative (still escaped) against the given system and code columns."""
    parts = split_escaped(raw, "|")
    if len(parts) == 1:
        return Q(**{code_field: unescape(raw)})
    if len(parts) != 2:
        raise InvalidSearch(f"'{raw}' has more than one unescaped '|'")
    system, code = (unescape(p) for p in parts)
    if not system and not code:
        raise InvalidSearch("'|' names neither a system nor a code")
    condition = Q(**{f"{system_field}__isnull": True}) if not system else Q(**{system_field: system})
    if code:
        condition &= Q(**{code_field: code})
    return condition


def _text_condition(raw: str) -> Q:
    text = normalize_string(unescape(raw))
    if not text:
        raise InvalidSearch("empty text")
    return Q(text__startswith=text)


def _of_type_condition(raw: str) -> Q:
    parts = split_escaped(raw, "|")
    if len(parts) != 3 or not all(parts):
        raise InvalidSearch(f"'{raw}' is not of the form type-system|type-code|value")
    type_system, type_code, value = (unescape(p) for p in parts)
    return Q(type_system=type_system, type_code=type_code, code=value)


def _supports_of_type() -> bool:
    names = {f.name for f in TokenIndex._meta.get_fields()}
    return all(f in names for f in _OF_TYPE_FIELDS)


def compile(ctx: Context, param: Param, modifier: str | None, values: list[str]) -> Q:
    if modifier in _TERMINOLOGY:
        raise UnsupportedModifier(
            f"modifier ':{modifier}' needs terminology services (subsumption, value-set expansion), "
            "which this server does not provide"
        )
    if modifier == "of-type":
        if not _supports_of_type():
            raise UnsupportedModifier(
                "modifier ':of-type' is not supported: identifier types are not indexed"
            )
        one = _of_type_condition
    elif modifier == "text":
        one = _text_condition
    elif modifier in (None, "not"):
        one = token_condition
    else:
        raise InvalidSearch(f"modifier ':{modifier}' is not defined for token parameters")
    condition = Q()
    for raw in values:
        condition |= one(raw)
    found = index_rows(TokenIndex, param.resource_type, param.code, condition)
    return ~Q(found) if modifier == "not" else Q(found)
