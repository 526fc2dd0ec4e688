"""FHIR primitive types as GraphQL scalars (https://hl7.org/fhir/R4/graphql.html#schema,
https://hl7.org/fhir/R4/datatypes.html#primitive).

`boolean`, `integer`/`positiveInt`/`unsignedInt`, `string` and `id` map to GraphQL's own Boolean,
Int, String and ID. Every other primitive is a scalar of its FHIR name whose value is the JSON
value, unchanged: a `date` stays `"2024-01"`, a `decimal` stays the `Decimal` the stored text was
parsed into, so `1.50` leaves as `1.50` (the response is written with resources/fhirjson.py, which
keeps a Decimal's digits). Values are served from bodies the server validated on write; they are
not re-checked here.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import graphene
from graphql import GraphQLError, GraphQLScalarType
from graphql.language.ast import (
    BooleanValueNode,
    EnumValueNode,
    FloatValueNode,
    IntValueNode,
    ListValueNode,
    NullValueNode,
    ObjectValueNode,
    StringValueNode,
    VariableNode,
)

_BUILT_IN = {
    "boolean": graphene.Boolean,
    "integer": graphene.Int,
    "positiveInt": graphene.Int,
    "unsignedInt": graphene.Int,
    "string": graphene.String,
    "id": graphene.ID,
}


def _same(value):
    return value


def _string_literal(node, _variables=None):
    if isinstance(node, StringValueNode):
        return node.value
    raise GraphQLError("Expected a string")


def _text_scalar(name: str) -> type[graphene.Scalar]:
    return type(
        name,
        (graphene.Scalar,),
        {
            "Meta": type("Meta", (), {"name": name, "description": f"FHIR {name} (JSON string)"}),
            "serialize": staticmethod(_same),
            "parse_value": staticmethod(_string),
            "parse_literal": staticmethod(_string_literal),
        },
    )


def _string(value):
    if not isinstance(value, str):
        raise GraphQLError("Expected a string")
    return value


def _decimal_value(value):
    if isinstance(value, bool):
        raise GraphQLError("Expected a decimal")
    try:
        return Decimal(str(value)) if isinstance(value, (int, float, str)) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise GraphQLError("Expected a decimal") from exc


def _decimal_literal(node, _variables=None):
    if isinstance(node, (IntValueNode, FloatValueNode, StringValueNode)):
        return _decimal_value(node.value)
    raise GraphQLError("Expected a decimal")


class decimal(graphene.Scalar):  # noqa: N801  (the FHIR type's name)
    """FHIR decimal: served as a JSON number with exactly the stored digits."""

    class Meta:
        name = "decimal"

    serialize = staticmethod(_same)
    parse_value = staticmethod(_decimal_value)
    parse_literal = staticmethod(_decimal_literal)


def _resource_value(value):
    if not isinstance(value, dict):
        raise GraphQLError("Expected a resource: a JSON object with its resourceType")
    return value


def _json_literal(node, variables=None):
    """A literal object as FHIR JSON: numbers with a fraction stay Decimal (their digits kept)."""
    if isinstance(node, ObjectValueNode):
        return {f.name.value: _json_literal(f.value, variables) for f in node.fields}
    if isinstance(node, ListValueNode):
        return [_json_literal(v, variables) for v in node.values]
    if isinstance(node, (StringValueNode, BooleanValueNode)):
        return node.value
    if isinstance(node, IntValueNode):
        return int(node.value)
    if isinstance(node, FloatValueNode):
        return Decimal(node.value)
    if isinstance(node, NullValueNode):
        return None
    if isinstance(node, VariableNode):
        return (variables or {}).get(node.name.value)
    raise GraphQLError("Expected JSON")


def _resource_literal(node, variables=None):
    return _resource_value(_json_literal(node, variables))


def _name_literal(node, _variables=None):
    if isinstance(node, (EnumValueNode, StringValueNode)):
        return node.value
    raise GraphQLError("Expected a search parameter's name")


# `_reference: subject` as the spec writes it (a bare name), or `_reference: "subject"`.
PARAMETER_NAME = GraphQLScalarType(
    "SearchParameterName",
    description="The name of a search parameter, bare (subject) or quoted",
    serialize=_same,
    parse_value=_string,
    parse_literal=_name_literal,
)


class ResourceInput(graphene.Scalar):
    """A resource as FHIR JSON (https://hl7.org/fhir/R4/json.html), the `res` of a mutation;
    validated on write like a REST body. Pass it as a variable to keep decimals' digits exactly."""

    class Meta:
        name = "ResourceInput"

    serialize = staticmethod(_same)
    parse_value = staticmethod(_resource_value)
    parse_literal = staticmethod(_resource_literal)


def scalars(primitives) -> dict[str, type]:
    """The GraphQL type of each FHIR primitive."""
    out: dict[str, type] = {}
    for name in sorted(primitives):
        if name in _BUILT_IN:
            out[name] = _BUILT_IN[name]
        elif name == "decimal":
            out[name] = decimal
        else:
            out[name] = _text_scalar(name)
    return out
