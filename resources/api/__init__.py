"""The FHIR REST API (https://hl7.org/fhir/R4/http.html): one module per interaction, routed in urls.py.

Views parse the request and render the answer; the work is done by resources.services (writes),
resources.selectors (reads) and resources.transaction (batch/transaction).
"""
