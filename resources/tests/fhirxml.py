"""FHIR XML to JSON for test data (https://hl7.org/fhir/R4/xml.html), driven by the R4 definitions:
the element's cardinality decides between a JSON array and a single value."""

from decimal import Decimal
from xml.etree import ElementTree

from resources import definitions

FHIR = "{http://hl7.org/fhir}"
XHTML = "http://www.w3.org/1999/xhtml"
ElementTree.register_namespace("", XHTML)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def resource(element: ElementTree.Element) -> dict:
    resource_type = _local(element.tag)
    out = {"resourceType": resource_type}
    _fill(out, element, resource_type)
    return out


def _fill(out: dict, element: ElementTree.Element, type_name: str) -> None:
    keys = definitions.type_schema(type_name).json_keys
    for child in element:
        if not isinstance(child.tag, str):
            continue  # comments
        name = _local(child.tag)
        schema, child_type = keys[name]
        value = _value(child, child_type)
        if schema.max is None or schema.max > 1:
            out.setdefault(name, []).append(value)
        else:
            out[name] = value


def _value(element: ElementTree.Element, type_name: str) -> object:
    if type_name == "xhtml":
        return ElementTree.tostring(element, encoding="unicode").strip()
    if type_name == "Resource":
        return resource(next(iter(element)))
    schema = definitions.type_schema(type_name)
    if schema.kind == "primitive-type":
        raw = element.get("value")
        if type_name == "boolean":
            return raw == "true"
        if type_name in ("integer", "positiveInt", "unsignedInt"):
            return int(raw)
        if type_name == "decimal":
            return Decimal(raw)
        return raw
    out: dict = {}
    _fill(out, element, type_name)
    return out
