"""Search (https://hl7.org/fhir/R4/search.html): criteria compiled to one SQL statement, and the
result shaped around it.

Criteria side: `criteria.build_criteria` turns `(name, value)` pairs into one `Q` over `Resource`;
`params` reads names, modifiers, prefixes and escapes; `types/` holds one module per parameter type;
`chain` compiles chained parameters and `_has`; `conditional` matches conditional interactions with
strict handling. Result side: `engine` (entry point), `sort`, `paging`, `include`, `compartment`,
`everything`.
"""
