"""The `$graphql` endpoints (https://hl7.org/fhir/R4/graphql.html) as an Admin: by id, lists,
references, contained resources, choice types, decimals, instance level, the request forms, and
malformed requests answered as GraphQL errors (never a 500)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.test import override_settings

from audit.models import AuditEntry

pytestmark = pytest.mark.django_db


def gql(client, query, *, variables=None, path="$graphql", headers=None, operation_name=None):
    body = {"query": query}
    if variables is not None:
        body["variables"] = variables
    if operation_name is not None:
        body["operationName"] = operation_name
    response = client.post(
        f"/fhir/{path}", json.dumps(body), content_type="application/json", headers=headers or {}
    )
    assert response["Content-Type"] == "application/json"
    return response, json.loads(response.content)


@pytest.fixture
def chart(fhir):
    """A patient with an observation (decimal value, contained performer) and a practitioner."""
    dr = fhir.create({"resourceType": "Practitioner", "name": [{"family": "Okafor"}]})
    patient = fhir.create(
        {
            "resourceType": "Patient",
            "name": [{"family": "Nakamura", "given": ["Emi"]}],
            "birthDate": "1970-03-04",
            "_birthDate": {"extension": [{"url": "http://example.org/accuracy", "valueCode": "exact"}]},
            "gender": "female",
            "generalPractitioner": [{"reference": f"Practitioner/{dr['id']}"}],
            "deceasedBoolean": False,
        }
    )
    obs = fhir.create(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "subject": {"reference": f"Patient/{patient['id']}"},
            "valueQuantity": {"value": Decimal("72.50"), "unit": "kg"},
            "contained": [{"resourceType": "Device", "id": "scale", "manufacturer": "Acme"}],
            "device": {"reference": "#scale"},
        }
    )
    return {"dr": dr, "patient": patient, "obs": obs}


def test_by_id_reads_fields_choices_primitive_extensions_and_references(fhir, chart):
    pid = chart["patient"]["id"]
    response, body = gql(
        fhir.client,
        """query($id: ID!) { Patient(id: $id) {
             resourceType id name { family given } birthDate _birthDate { extension { url valueCode } }
             deceasedBoolean
             generalPractitioner { reference resource { resourceType ... on Practitioner { name { family } } } }
           } }""",
        variables={"id": pid},
    )
    assert response.status_code == 200, body
    assert "errors" not in body
    patient = body["data"]["Patient"]
    assert patient["resourceType"] == "Patient" and patient["id"] == pid
    assert patient["name"] == [{"family": "Nakamura", "given": ["Emi"]}]
    assert patient["birthDate"] == "1970-03-04"
    assert patient["_birthDate"]["extension"][0]["valueCode"] == "exact"
    assert patient["deceasedBoolean"] is False
    assert patient["generalPractitioner"][0]["resource"] == {
        "resourceType": "Practitioner",
        "name": [{"family": "Okafor"}],
    }


def test_decimal_keeps_its_digits_and_contained_references_resolve(fhir, chart):
    response, _ = gql(
        fhir.client,
        f"""{{ Observation(id: "{chart["obs"]["id"]}") {{
             valueQuantity {{ value unit }}
             device {{ resource {{ ... on Device {{ id manufacturer }} }} }}
             contained {{ resourceType id }} }} }}""",
    )
    text = response.content.decode()
    assert '"value":72.50' in text  # the stored digits, not 72.5
    obs = json.loads(text)["data"]["Observation"]
    assert obs["device"]["resource"] == {"id": "scale", "manufacturer": "Acme"}
    assert obs["contained"] == [{"resourceType": "Device", "id": "scale"}]


def test_list_with_search_arguments_count_offset_and_sort(fhir, chart):
    for family in ("Alder", "Birch", "Cedar"):
        fhir.create({"resourceType": "Patient", "name": [{"family": family}], "gender": "male"})
    _, body = gql(fhir.client, '{ PatientList(gender: "male", _sort: "family") { name { family } } }')
    assert [p["name"][0]["family"] for p in body["data"]["PatientList"]] == ["Alder", "Birch", "Cedar"]
    _, body = gql(
        fhir.client,
        '{ PatientList(gender: "male", _sort: "-family", _count: 1, _offset: 1) { name { family } } }',
    )
    assert [p["name"][0]["family"] for p in body["data"]["PatientList"]] == ["Birch"]
    # A parameter with '-' in its name is written with '_'; a list of values is ANDed as in REST.
    _, body = gql(fhir.client, '{ ObservationList(value_quantity: ["gt70", "lt80"]) { id } }')
    assert body["data"]["ObservationList"] == [{"id": chart["obs"]["id"]}]


def test_instance_level_has_the_resource_as_root(fhir, chart):
    pid = chart["patient"]["id"]
    response, body = gql(fhir.client, "{ id name { family } }", path=f"Patient/{pid}/$graphql")
    assert response.status_code == 200
    assert body == {"data": {"id": pid, "name": [{"family": "Nakamura"}]}}
    response, body = gql(fhir.client, "{ id }", path="Patient/missing/$graphql")
    assert response.status_code == 404
    assert body["errors"][0]["message"] == "Patient/missing is not known"


def test_get_and_raw_graphql_bodies(fhir, chart):
    pid = chart["patient"]["id"]
    response = fhir.client.get("/fhir/$graphql", {"query": f'{{ Patient(id: "{pid}") {{ id }} }}'})
    assert json.loads(response.content) == {"data": {"Patient": {"id": pid}}}
    response = fhir.client.post(
        "/fhir/$graphql", f'{{ Patient(id: "{pid}") {{ id }} }}', content_type="application/graphql"
    )
    assert json.loads(response.content) == {"data": {"Patient": {"id": pid}}}


def test_missing_resource_is_null_with_an_error(fhir):
    response, body = gql(fhir.client, '{ Patient(id: "nobody") { id } }')
    assert response.status_code == 200
    assert body["data"] == {"Patient": None}
    assert body["errors"][0]["message"] == "Patient/nobody is not known"
    assert body["errors"][0]["path"] == ["Patient"]


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("{ Patient(id: ", None),  # syntax
        ('{ Patient(id: "x") { nosuchfield } }', None),  # unknown field
        ('{ Spaceship(id: "x") { id } }', None),  # unknown type
        ('{ PatientList(_count: "many") { id } }', None),  # wrong argument type
        ("query($n: Int) { PatientList(_count: $n) { id } }", {"n": "many"}),  # wrong variable type
        ("{ Patient { id } }", None),  # missing required argument
        ('mutation { Patient(id: "x") { id } }', None),  # no mutations yet
        ("{ PatientList(_count: -1) { id } }", None),
        ("{ PatientList(_count: 900, _offset: 900) { id } }", None),
        ('{ PatientList(birthdate: "not-a-date") { id } }', None),
        ("{ " * 5000 + "}" * 5000, None),  # deep nesting
    ],
)
def test_malformed_requests_are_graphql_errors_not_500(fhir, query, variables):
    response, body = gql(fhir.client, query, variables=variables)
    assert response.status_code in (200, 400), body
    assert body["errors"] and all(isinstance(e["message"], str) for e in body["errors"])
    assert "Traceback" not in response.content.decode()


@pytest.mark.parametrize(
    ("content_type", "payload"),
    [
        ("application/json", "{not json"),
        ("application/json", "[1, 2]"),
        ("application/json", '{"query": 3}'),
        ("application/json", '{"query": "{ PatientList { id } }", "variables": [1]}'),
        ("text/plain", "{ PatientList { id } }"),
        ("application/graphql", b"\xff\xfe"),
    ],
)
def test_bad_bodies_are_errors(fhir, content_type, payload):
    response = fhir.client.post("/fhir/$graphql", payload, content_type=content_type)
    assert response.status_code in (400, 415)
    assert json.loads(response.content)["errors"][0]["message"]


def test_other_methods_and_bad_credentials(fhir, client):
    response = fhir.client.put("/fhir/$graphql", "{}", content_type="application/json")
    assert response.status_code == 405
    assert json.loads(response.content)["errors"]
    response = client.post(
        "/fhir/$graphql",
        json.dumps({"query": "{ PatientList { id } }"}),
        content_type="application/json",
        headers={"Authorization": "Bearer nonsense"},
    )
    assert response.status_code == 401
    assert json.loads(response.content)["errors"]


def test_one_audit_row_per_request_naming_the_operation(fhir, chart):
    pid = chart["patient"]["id"]
    before = AuditEntry.objects.count()
    gql(
        fhir.client,
        f"""{{ Patient(id: "{pid}") {{ id generalPractitioner {{ resource {{ id }} }} }}
              again: Patient(id: "{pid}") {{ id }} }}""",
    )
    rows = list(AuditEntry.objects.order_by("-id")[: AuditEntry.objects.count() - before])
    assert [r.operation for r in rows] == ["graphql-read"]
    assert f"Patient/{pid}" in rows[0].results and f"Practitioner/{chart['dr']['id']}" in rows[0].results
    before = AuditEntry.objects.count()
    gql(fhir.client, '{ PatientList { id } Patient(id: "x") { id } }')
    rows = list(AuditEntry.objects.order_by("-id")[: AuditEntry.objects.count() - before])
    assert [r.operation for r in rows] == ["graphql-search"]
    before = AuditEntry.objects.count()
    gql(fhir.client, "{ Patient(id: ")
    rows = list(AuditEntry.objects.order_by("-id")[: AuditEntry.objects.count() - before])
    assert [(r.operation, r.status) for r in rows] == [("graphql-read", 400)]


@override_settings(FHIR_GRAPHQL_MAX_DEPTH=4, FHIR_GRAPHQL_MAX_FIELDS=30, FHIR_GRAPHQL_MAX_COST=50)
def test_limits_are_errors_naming_the_limit(fhir, chart):
    pid = chart["patient"]["id"]
    cases = {
        "FHIR_GRAPHQL_MAX_DEPTH": f'{{ Patient(id: "{pid}") {{ meta {{ extension {{ valueCoding {{ extension {{ url }} }} }} }} }} }}',
        "FHIR_GRAPHQL_MAX_FIELDS": "fragment F on Patient { id gender birthDate active } { "
        + " ".join(f'p{i}: Patient(id: "{pid}") {{ ...F }}' for i in range(8))
        + " }",
        "FHIR_GRAPHQL_MAX_COST": "{ PatientList(_count: 30) { generalPractitioner { resource { id } } } }",
    }
    for setting, query in cases.items():
        response, body = gql(fhir.client, query)
        assert response.status_code == 400, (setting, body)
        assert setting in body["errors"][0]["message"], body
        assert body["errors"][0]["extensions"]["code"] == "too-costly"
    # Within the limits the same shapes run.
    response, body = gql(
        fhir.client, "{ PatientList(_count: 4) { generalPractitioner { resource { id } } } }"
    )
    assert response.status_code == 200 and "errors" not in body, body


def test_connection_pages_with_cursors(fhir):
    families = ["Ash", "Beech", "Cherry", "Damson", "Elm"]
    for family in families:
        fhir.create({"resourceType": "Patient", "name": [{"family": family}], "gender": "other"})
    query = """query($cursor: String) { PatientConnection(gender: "other", _sort: "family", _count: 2, _cursor: $cursor) {
                 count offset pagesize first previous next last
                 edges { mode score resource { name { family } } } } }"""
    seen, cursor, offsets = [], None, []
    while True:
        response, body = gql(fhir.client, query, variables={"cursor": cursor})
        assert "errors" not in body, body
        page = body["data"]["PatientConnection"]
        assert page["count"] == 5 and page["pagesize"] == 2 and page["last"] is None
        assert all(edge["mode"] == "match" for edge in page["edges"])
        offsets.append(page["offset"])
        seen += [edge["resource"]["name"][0]["family"] for edge in page["edges"]]
        if len(offsets) > 1:
            assert page["previous"]
        if not page["next"]:
            break
        cursor = page["next"]
    assert seen == families and offsets == [0, 2, 4]
    # previous goes back a page; first goes to the start.
    _, body = gql(fhir.client, query, variables={"cursor": page["previous"]})
    back = body["data"]["PatientConnection"]
    assert back["offset"] == 2 and [e["resource"]["name"][0]["family"] for e in back["edges"]] == [
        "Cherry",
        "Damson",
    ]
    _, body = gql(fhir.client, query, variables={"cursor": page["first"]})
    assert body["data"]["PatientConnection"]["offset"] == 0
    _, body = gql(fhir.client, query, variables={"cursor": "not-a-cursor"})
    assert body["data"]["PatientConnection"] is None and body["errors"][0]["message"]


def test_connection_counts_only_when_asked(fhir, chart):
    before = AuditEntry.objects.count()
    _, body = gql(fhir.client, "{ PatientConnection { edges { resource { id } } } }")
    assert "count" not in body["data"]["PatientConnection"]
    rows = list(AuditEntry.objects.order_by("-id")[: AuditEntry.objects.count() - before])
    assert [r.operation for r in rows] == ["graphql-search"]


def test_reverse_references(fhir, chart):
    pid = chart["patient"]["id"]
    other = fhir.create({"resourceType": "Patient"})
    fhir.create({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                 "subject": {"reference": f"Patient/{other['id']}"}})  # fmt: skip
    query = f"""{{ Patient(id: "{pid}") {{ id
                 ObservationList(_reference: subject) {{ id valueQuantity {{ value }} }}
                 final: ObservationList(_reference: "patient", status: "final", code: "29463-7") {{ id }}
                 none: ObservationList(_reference: subject, status: "cancelled") {{ id }} }} }}"""
    response, body = gql(fhir.client, query)
    assert "errors" not in body, body
    patient = body["data"]["Patient"]
    assert [o["id"] for o in patient["ObservationList"]] == [chart["obs"]["id"]]
    assert patient["final"] == [{"id": chart["obs"]["id"]}] and patient["none"] == []
    # Nested under a list, and at instance level.
    _, body = gql(
        fhir.client, f'{{ PatientList(_id: "{pid}") {{ ObservationList(_reference: subject) {{ id }} }} }}'
    )
    assert body["data"]["PatientList"] == [{"ObservationList": [{"id": chart["obs"]["id"]}]}]
    _, body = gql(
        fhir.client, "{ ObservationList(_reference: subject) { id } }", path=f"Patient/{pid}/$graphql"
    )
    assert body["data"]["ObservationList"] == [{"id": chart["obs"]["id"]}]
    # A parameter that cannot point to a Patient, or none at all.
    _, body = gql(
        fhir.client, f'{{ Patient(id: "{pid}") {{ ObservationList(_reference: "performer_x") {{ id }} }} }}'
    )
    assert body["errors"][0]["message"].startswith("_reference")
    before = AuditEntry.objects.count()
    gql(fhir.client, f'{{ Patient(id: "{pid}") {{ ObservationList(_reference: subject) {{ id }} }} }}')
    assert [r.operation for r in AuditEntry.objects.order_by("id")[before:]] == ["graphql-search"]


def test_introspection_works(fhir):
    _, body = gql(
        fhir.client,
        '{ __schema { queryType { name } mutationType { name } } __type(name: "HumanName") { fields { name } } }',
    )
    assert body["data"]["__schema"] == {"queryType": {"name": "Query"}, "mutationType": {"name": "Mutation"}}
    assert {"family", "given", "_family"} <= {f["name"] for f in body["data"]["__type"]["fields"]}


def test_failures_inside_resolvers_are_error_entries(fhir, chart, monkeypatch):
    import sqlite3

    from django.db import OperationalError

    from resources.graphql import resolvers

    def cancelled(*args, **kwargs):
        try:
            raise sqlite3.OperationalError("interrupted")
        except sqlite3.OperationalError as cause:
            raise OperationalError("interrupted") from cause

    monkeypatch.setattr(resolvers.door, "search", cancelled)
    response, body = gql(fhir.client, "{ PatientList { id } }")
    assert response.status_code == 200
    assert body["errors"][0]["extensions"] == {"status": 503, "code": "too-costly"}

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(resolvers.door, "search", broken)
    response, body = gql(fhir.client, "{ PatientList { id } }")
    assert body["errors"][0]["message"] == "Internal server error"
    assert "secret" not in response.content.decode()


def test_references_are_read_per_level_not_per_resource(fhir):
    """For a caller whose rules allow whole types, the statements a query costs depend on its depth,
    not on how many resources it returns (references are read a level at a time)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    query = """{ PatientList(gender: "unknown", _count: 50) { id
                 generalPractitioner { resource { ... on Practitioner { id name { family } } } }
                 managingOrganization { resource { ... on Organization { id partOf { resource { id } } } } } } }"""

    def add_patients(n: int) -> None:
        for i in range(n):
            parent = fhir.create({"resourceType": "Organization", "name": f"parent {i}"})
            org = fhir.create({"resourceType": "Organization", "name": f"org {i}",
                               "partOf": {"reference": f"Organization/{parent['id']}"}})  # fmt: skip
            dr = fhir.create({"resourceType": "Practitioner", "name": [{"family": f"Dr {i}"}]})
            fhir.create({"resourceType": "Patient", "gender": "unknown",
                         "generalPractitioner": [{"reference": f"Practitioner/{dr['id']}"}],
                         "managingOrganization": {"reference": f"Organization/{org['id']}"}})  # fmt: skip

    def statements() -> tuple[int, dict]:
        with CaptureQueriesContext(connection) as captured:
            _, body = gql(fhir.client, query)
        assert "errors" not in body, body
        return len(captured.captured_queries), body

    add_patients(2)
    few, body = statements()
    assert all(
        p["managingOrganization"]["resource"]["partOf"]["resource"] for p in body["data"]["PatientList"]
    )
    add_patients(6)
    many, body = statements()
    assert len(body["data"]["PatientList"]) == 8
    assert many == few


def test_instance_level_follows_references(fhir, chart):
    _, body = gql(
        fhir.client,
        "{ generalPractitioner { resource { ... on Practitioner { name { family } } } } }",
        path=f"Patient/{chart['patient']['id']}/$graphql",
    )
    assert body == {"data": {"generalPractitioner": [{"resource": {"name": [{"family": "Okafor"}]}}]}}


@override_settings(FHIR_MAX_BODY_BYTES=100)
def test_a_body_over_the_limit_is_413(fhir):
    response = fhir.client.post(
        "/fhir/$graphql",
        json.dumps({"query": "{ PatientList { id } }" + " " * 200}),
        content_type="application/json",
    )
    assert response.status_code == 413
    assert json.loads(response.content)["errors"][0]["extensions"]["code"] == "too-costly"
