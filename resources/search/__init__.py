"""Search: parse a FHIR query string, plan it, and compile it to one SQL statement.

https://hl7.org/fhir/R4/search.html. Today `conditional` answers the `_id` and `identifier` criteria
that conditional create/update/delete and transaction conditional references need.
"""
