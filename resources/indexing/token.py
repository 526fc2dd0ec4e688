"""Token index rows (https://hl7.org/fhir/R4/search.html#token).

Row columns: (system, code, text, type_system, type_code).

- Coding: its system and code; `text` the normalised display (for `:text`).
- CodeableConcept: one row per coding, `text` the coding's display or else the concept's text; the
  concept's text also gets a row of its own (system and code NULL) when no coding row carries it, so
  `:text` finds every text the spec names (https://hl7.org/fhir/R4/search.html#modifiers), and a
  concept with text only is still present for `:missing`.
- Identifier: system and value; `text` the normalised type.text; type_system/type_code a coding of
  Identifier.type, for `:of-type` (https://hl7.org/fhir/R4/search.html#token, "of-type"): one row per
  type coding, so an identifier with two type codings gives two rows.
- ContactPoint: the value as code, system NULL (the spec matches a token on ContactPoint.value; the
  ContactPoint.system code is a kind of channel, not a code system).
- code, string, id, uri and other primitives: the value as code, system NULL; boolean as `true`/`false`.
"""

from __future__ import annotations

from decimal import Decimal

from .string import fold

MAX = 255


def _text(value: object) -> str | None:
    if type(value) is not str:
        return None
    return fold(value) or None


def _str(value: object) -> str | None:
    return value[:MAX] if type(value) is str else None


def coding_rows(values: list) -> list[tuple]:
    rows = []
    for coding in values:
        if type(coding) is not dict:
            continue
        system, code, text = (
            _str(coding.get("system")),
            _str(coding.get("code")),
            _text(coding.get("display")),
        )
        if system or code or text:
            rows.append((system, code, text, None, None))
    return rows


def concept_rows(values: list) -> list[tuple]:
    rows = []
    for concept in values:
        if type(concept) is not dict:
            continue
        concept_text = _text(concept.get("text"))
        carried = False
        codings = concept.get("coding")
        if type(codings) is list:
            for coding in codings:
                if type(coding) is not dict:
                    continue
                system, code = _str(coding.get("system")), _str(coding.get("code"))
                text = _text(coding.get("display")) or concept_text
                if system or code or text:
                    rows.append((system, code, text, None, None))
                    carried = carried or text == concept_text
        if concept_text and not carried:
            rows.append((None, None, concept_text, None, None))
    return rows


def identifier_rows(values: list) -> list[tuple]:
    rows = []
    for ident in values:
        if type(ident) is not dict:
            continue
        system, value = _str(ident.get("system")), _str(ident.get("value"))
        id_type = ident.get("type")
        text = None
        type_codings = ()
        if type(id_type) is dict:
            text = _text(id_type.get("text"))
            codings = id_type.get("coding")
            if type(codings) is list:
                type_codings = [
                    (_str(c.get("system")), _str(c.get("code")))
                    for c in codings
                    if type(c) is dict and c.get("code")
                ]
        if not (system or value or text or type_codings):
            continue
        if type_codings:
            rows.extend((system, value, text, ts, tc) for ts, tc in type_codings)
        else:
            rows.append((system, value, text, None, None))
    return rows


def contact_point_rows(values: list) -> list[tuple]:
    return [
        (None, value[:MAX], None, None, None)
        for point in values
        if type(point) is dict and type(value := point.get("value")) is str and value
    ]


def primitive_rows(values: list) -> list[tuple]:
    rows = []
    for value in values:
        if value is True:
            rows.append((None, "true", None, None, None))
        elif value is False:
            rows.append((None, "false", None, None, None))
        elif type(value) is str:
            if value:
                rows.append((None, value[:MAX], None, None, None))
        elif type(value) is int or type(value) is Decimal:
            rows.append((None, str(value), None, None, None))
    return rows


def coding_codes(values: list) -> list[tuple]:
    """(system, code) of Codings without the display: composites need no `text`."""
    return [
        (_str(c.get("system")), _str(c.get("code")))
        for c in values
        if type(c) is dict and (c.get("system") or c.get("code"))
    ]


def concept_codes(values: list) -> list[tuple]:
    codings = []
    for concept in values:
        if type(concept) is dict and type(found := concept.get("coding")) is list:
            codings.extend(found)
    return coding_codes(codings)


CONVERTERS = {
    "Coding": coding_rows,
    "CodeableConcept": concept_rows,
    "Identifier": identifier_rows,
    "ContactPoint": contact_point_rows,
    "code": primitive_rows,
    "string": primitive_rows,
    "uri": primitive_rows,
    "boolean": primitive_rows,
    "integer": primitive_rows,
    "decimal": primitive_rows,
    "date": primitive_rows,
    "dateTime": primitive_rows,
}

# Composite components (composite.py) use the codes only.
CODE_CONVERTERS = {**CONVERTERS, "Coding": coding_codes, "CodeableConcept": concept_codes}
