"""GraphQL mutations (https://hl7.org/fhir/R4/graphql.html#mutations): `TCreate(res:)`,
`TUpdate(id:, res:)`, `TDelete(id:)`, each one interaction of the door (validation, rules, its own
transaction and audit row), answering the result as the caller's graphql-read shows it."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from audit.models import AuditEntry
from authz import rules, ruleset
from conftest import bearer
from resources import fhirjson

pytestmark = pytest.mark.django_db

CREATE = """mutation($res: ResourceInput!) { ObservationCreate(res: $res) { id status valueQuantity { value } } }"""


def _observation(**more) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "valueQuantity": {"value": Decimal("70.10"), "unit": "kg"},
        **more,
    }


def post(client, query, variables, headers=None):
    response = client.post(
        "/fhir/$graphql",
        fhirjson.dumps({"query": query, "variables": variables}),
        content_type="application/json",
        headers=headers or {},
    )
    return response, json.loads(response.content)


def _new_rows(before: int) -> list:
    return list(AuditEntry.objects.order_by("id")[before:])


def test_create_update_delete_each_an_interaction(fhir):
    before = AuditEntry.objects.count()
    response, body = post(fhir.client, CREATE, {"res": _observation()})
    assert "errors" not in body, body
    created = body["data"]["ObservationCreate"]
    assert created["status"] == "final"
    assert '"value":70.10' in response.content.decode()  # the digits sent are the digits kept
    obs_id = created["id"]
    assert '"value":70.10' in fhir.get(f"Observation/{obs_id}").content.decode()
    ops = [(r.operation, r.status) for r in _new_rows(before)]
    assert ("create", 201) in ops and len([o for o in ops if o[0] == "create"]) == 1

    before = AuditEntry.objects.count()
    _, body = post(
        fhir.client,
        """mutation($id: ID!, $res: ResourceInput!) {
             ObservationUpdate(id: $id, res: $res) { id status meta { versionId } } }""",
        {"id": obs_id, "res": _observation(id=obs_id, status="amended")},
    )
    assert body["data"]["ObservationUpdate"] == {
        "id": obs_id,
        "status": "amended",
        "meta": {"versionId": "2"},
    }
    assert [r.operation for r in _new_rows(before) if r.operation == "update"] == ["update"]

    _, body = post(
        fhir.client,
        "mutation($id: ID!) { ObservationDelete(id: $id) { issue { severity diagnostics } } }",
        {"id": obs_id},
    )
    assert body["data"]["ObservationDelete"]["issue"][0]["diagnostics"] == f"Observation/{obs_id} deleted"
    assert fhir.get(f"Observation/{obs_id}").status_code == 410


def test_two_mutations_in_one_request_are_two_interactions(fhir):
    before = AuditEntry.objects.count()
    _, body = post(
        fhir.client,
        """mutation($a: ResourceInput!, $b: ResourceInput!) {
             a: ObservationCreate(res: $a) { id } b: ObservationCreate(res: $b) { id } }""",
        {"a": _observation(), "b": _observation()},
    )
    assert body["data"]["a"]["id"] != body["data"]["b"]["id"]
    assert [r.operation for r in _new_rows(before) if r.operation == "create"] == ["create", "create"]


def test_invalid_resource_is_an_error_and_nothing_is_written(fhir):
    before = fhir.get("Observation").json_body.get("total")
    _, body = post(fhir.client, CREATE, {"res": {"resourceType": "Observation", "nonsense": 1}})
    assert body["data"]["ObservationCreate"] is None
    assert body["errors"][0]["extensions"]["status"] == 400
    assert fhir.get("Observation").json_body.get("total") == before
    _, body = post(fhir.client, CREATE, {"res": [1, 2]})
    assert body["errors"] and body.get("data") is None


def test_mutations_need_post(fhir):
    response = fhir.client.get("/fhir/$graphql", {"query": 'mutation { ObservationDelete(id: "x") { id } }'})
    assert response.status_code == 405


def test_mutations_follow_the_rules_and_answer_as_graphql_read(fhir):
    """A patient may create its own Observations (create) and read them over GraphQL
    (graphql-read), but not write another patient's; a role without graphql-read gets null."""
    for pid in ("p1", "p2"):
        fhir.put(f"Patient/{pid}", {"resourceType": "Patient", "id": pid})
    ruleset.replace_rules(
        ruleset.parse_yaml(
            """
rules:
  - {name: admin-all, role: Admin, resource: "*", operation: ["*", generate-token], validator: Allowed}
  - {name: own, role: Patient, resource: "*", operation: [create, read, graphql-read], validator: PatientCompartment}
  - {name: own-blind, role: Device, resource: "*", operation: [create], validator: Allowed}
"""
        )
    )
    rules.forget_rules()
    try:
        patient = {"Authorization": bearer("Patient", "Patient/p1")}
        _, body = post(
            fhir.client, CREATE, {"res": _observation(subject={"reference": "Patient/p1"})}, patient
        )
        assert body["data"]["ObservationCreate"]["status"] == "final", body
        _, body = post(
            fhir.client, CREATE, {"res": _observation(subject={"reference": "Patient/p2"})}, patient
        )
        assert body["data"]["ObservationCreate"] is None
        assert body["errors"][0]["extensions"]["status"] in (403, 404)
        device = {"Authorization": bearer("Device", "")}
        _, body = post(fhir.client, CREATE, {"res": _observation()}, device)
        assert "errors" not in body and body["data"]["ObservationCreate"] is None  # written, not readable
    finally:
        rules.forget_rules()


def test_a_mutation_notifies_subscriptions_like_any_write(fhir):
    """A GraphQL write fills the outbox in its transaction, so a rest-hook hears of it as of REST's."""
    from subscriptions import worker
    from subscriptions.tests import receivers

    with receivers.HttpReceiver() as hook:
        subscription = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "graphql writes",
            "criteria": "Observation?code:text=weight",
            "channel": {
                "type": "rest-hook",
                "endpoint": f"{hook.url}/hook",
                "payload": "application/fhir+json",
            },
        }
        assert fhir.post("Subscription", subscription).status_code == 201
        _, body = post(fhir.client, CREATE, {"res": _observation()})
        created = body["data"]["ObservationCreate"]["id"]
        worker.drain()
        assert [(r.method, r.path) for r in hook.requests] == [("PUT", f"/hook/Observation/{created}")]
