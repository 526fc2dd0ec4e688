"""FHIR R4 (4.0.1) definitions: resource types, element schemas, search parameters, compartments.

Generated from the official HL7 definition files by scripts/generate_definitions.py
(https://hl7.org/fhir/R4/downloads.html); see loader.py for what each function returns.
"""

from resources.definitions.loader import (
    ElementSchema,
    SearchParam,
    TypeSchema,
    compartments,
    element_for_json_key,
    mandatory_elements,
    primitive_types,
    resource_types,
    search_parameter_by_url,
    search_parameters,
    structure_names,
    summary_elements,
    type_schema,
)

__all__ = [
    "ElementSchema",
    "SearchParam",
    "TypeSchema",
    "compartments",
    "element_for_json_key",
    "mandatory_elements",
    "primitive_types",
    "resource_types",
    "search_parameter_by_url",
    "search_parameters",
    "structure_names",
    "summary_elements",
    "type_schema",
]
