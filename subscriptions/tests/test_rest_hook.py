"""Subscriptions end to end over REST and a real HTTP receiver: accepted and refused Subscription
resources, the outbox, matching on the event's own version, rest-hook deliveries with their headers,
retries into a dead letter and back, and the subscriber's rules deciding every notification."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from authz import rules, ruleset, tokens
from authz.context import AccessContext
from resources.services import resource_update
from subscriptions import worker
from subscriptions.channels.http import signature
from subscriptions.models import Delivery, Event, SubscriptionState

from . import receivers

SYSTEM = AccessContext.system("subscription tests")
FHIR = "application/fhir+json"

RULES = [
    {"name": "admin-all", "role": "Admin", "resource": "*", "operation": "*", "validator": "Allowed"},
    {"name": "admin-subscribe", "role": "Admin", "resource": "*", "operation": ["subscribe"], "validator": "Allowed"},
    {"name": "patient-own", "role": "Patient", "resource": "*", "operation": ["read", "search", "subscribe"],
     "validator": "PatientCompartment"},
    {"name": "patient-subscriptions", "role": "Patient", "resource": ["Subscription"],
     "operation": ["read", "search", "create", "update", "delete"], "validator": "Subscriber"},
    {"name": "research", "role": "Researcher", "resource": ["Observation", "Subscription"],
     "operation": ["read", "search", "subscribe", "create"], "validator": "Allowed",
     "property-filters": [{"path": "Observation.subject", "action": "remove"}]},
]  # fmt: skip


@pytest.fixture
def hook():
    receiver = receivers.start()
    yield receiver
    receiver.close()


@pytest.fixture
def world(db):
    ruleset.replace_rules(RULES)
    rules.forget_rules()  # a test's transaction never commits, so the cache would not learn of it
    for pid in ("p1", "p2"):
        resource_update(
            SYSTEM, resource_type="Patient", fhir_id=pid, body={"resourceType": "Patient", "id": pid}
        )
    yield
    rules.forget_rules()


def url(hook) -> str:
    return f"{hook.url}/hook"


def token(role: str, identity: str = "") -> dict:
    _, secret = tokens.mint(role=role, identity=identity)
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


def post(client: Client, auth: dict, resource_type: str, body: dict):
    return client.post(f"/fhir/{resource_type}", json.dumps(body), content_type=FHIR, **auth)


def subscription(endpoint: str, criteria: str = "Observation?code=8867-4", **channel) -> dict:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "tests",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": endpoint, **channel},
    }


def observation(patient: str, code: str = "8867-4", value: int = 70) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "valueQuantity": {"value": value, "unit": "/min"},
    }


def test_a_subscription_is_accepted_active_and_its_header_values_never_shown(world, hook):
    client, admin = Client(), token("Admin")
    body = subscription(url(hook), payload=FHIR, header=["Authorization: Bearer receiver-secret"])
    created = post(client, admin, "Subscription", body)
    assert created.status_code == 201, created.content
    shown = created.json()
    assert shown["status"] == "active"
    assert shown["channel"]["header"] == ["Authorization: ****"]
    sid = shown["id"]
    for path in (f"/fhir/Subscription/{sid}", f"/fhir/Subscription/{sid}/_history", "/fhir/Subscription"):
        assert b"receiver-secret" not in client.get(path, **admin).content
    state = SubscriptionState.objects.get(fhir_id=sid)
    assert state.headers == ["Authorization: Bearer receiver-secret"]
    assert state.subscriber_role == "Admin"
    # An update that sends the masked value back keeps the secret it stands for.
    shown["channel"]["header"] = ["Authorization: ****", "X-Extra: 1"]
    updated = client.put(f"/fhir/Subscription/{sid}", json.dumps(shown), content_type=FHIR, **admin)
    assert updated.status_code == 200, updated.content
    state.refresh_from_db()
    assert state.headers == ["Authorization: Bearer receiver-secret", "X-Extra: 1"]


@pytest.mark.parametrize(
    ("criteria", "channel", "status", "words"),
    [
        ("Observaton?code=1", {}, 422, "Observaton"),
        ("Observation?colour=red", {}, 400, "colour"),
        ("Observation?code=1&_include=Observation:subject", {}, 422, "_include"),
        ("Observation", {"type": "sms", "endpoint": "tel:+1555"}, 422, "sms"),
        ("Observation", {"type": "carrier-pigeon"}, 400, "carrier-pigeon"),
        ("Observation", {"endpoint": "ftp://example.org/x"}, 422, "http"),
        ("Observation", {"endpoint": ""}, 400, "endpoint"),
        ("Observation", {"payload": "application/fhir+xml"}, 422, "payload"),
        ("Observation", {"header": ["Bad header"]}, 400, "header"),
        ("Observation", {"header": ["Content-Type: text/plain"]}, 422, "Content-Type"),
    ],
)
def test_bad_subscriptions_are_refused_naming_the_problem(world, hook, criteria, channel, status, words):
    body = subscription(url(hook), criteria)
    body["channel"].update(channel)
    answer = post(Client(), token("Admin"), "Subscription", body)
    assert answer.status_code == status, answer.content
    assert answer.json()["resourceType"] == "OperationOutcome"
    assert words in json.dumps(answer.json())
    assert not SubscriptionState.objects.exists()


def test_private_endpoints_are_refused_unless_listed(world):
    with override_settings(FHIR_SUBSCRIPTION_ALLOWED_ENDPOINTS=""):
        # A name that does not resolve now may later: it is checked at every delivery.
        assert (
            post(
                Client(), token("Admin"), "Subscription", subscription("http://unresolvable.invalid/x")
            ).status_code
            == 201
        )
        answer = post(Client(), token("Admin"), "Subscription", subscription("http://127.0.0.1:9/hook"))
        assert answer.status_code == 422
        assert "FHIR_SUBSCRIPTION_ALLOWED_ENDPOINTS" in answer.content.decode()
        answer = post(Client(), token("Admin"), "Subscription", subscription("http://10.1.2.3/hook"))
        assert answer.status_code == 422


def test_subscribe_is_needed_on_the_criteria_type(world, hook):
    ruleset.replace_rules([*RULES, {"name": "viewer", "role": "Viewer", "resource": "*", "operation": ["read", "create"],
                                    "validator": "Allowed"}])  # fmt: skip
    rules.forget_rules()
    answer = post(Client(), token("Viewer"), "Subscription", subscription(url(hook)))
    assert answer.status_code == 403
    research = post(
        Client(), token("Researcher"), "Subscription", subscription(url(hook), "Patient?gender=male")
    )
    assert research.status_code == 403


def test_every_write_leaves_one_event_in_its_transaction(world):
    client, admin = Client(), token("Admin")
    before = Event.objects.count()
    post(client, admin, "Observation", observation("p1"))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": observation("p1"), "request": {"method": "POST", "url": "Observation"}}] * 3,
    }
    assert client.post("/fhir", json.dumps(bundle), content_type=FHIR, **admin).status_code == 200
    bad = dict(bundle, entry=[*bundle["entry"], {"resource": {"resourceType": "Observation"},
                                                 "request": {"method": "POST", "url": "Observation"}}])  # fmt: skip
    assert client.post("/fhir", json.dumps(bad), content_type=FHIR, **admin).status_code == 400
    assert Event.objects.count() == before + 4
    assert set(Event.objects.values_list("action", flat=True)) == {"create"}


def test_rest_hook_delivers_the_matching_version_with_its_headers(world, hook):
    client, admin = Client(), token("Admin")
    body = subscription(url(hook), payload=FHIR, header=["Authorization: Bearer receiver-secret"])
    assert post(client, admin, "Subscription", body).status_code == 201
    obs = post(client, admin, "Observation", observation("p1")).json()
    post(client, admin, "Observation", observation("p1", code="29463-7"))  # does not match
    # Changed again before delivery to something that no longer matches: the event's own version counts.
    changed = {**obs, "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]}}
    assert (
        client.put(
            f"/fhir/Observation/{obs['id']}", json.dumps(changed), content_type=FHIR, **admin
        ).status_code
        == 200
    )
    with override_settings(FHIR_SUBSCRIPTION_SIGNING_KEY="k" * 32):
        worker.drain()
    assert len(hook.requests) == 1
    got = hook.requests[0]
    assert got.method == "PUT" and got.path == f"/hook/Observation/{obs['id']}"
    sent = json.loads(got.body)
    assert sent["meta"]["versionId"] == "1" and sent["code"]["coding"][0]["code"] == "8867-4"
    assert got.headers["Authorization"] == "Bearer receiver-secret"
    key = got.headers["X-FHIR-Idempotency-Key"]
    assert got.headers["X-FHIR-Event-Number"] == "1"
    stamp = got.headers["X-FHIR-Signature"].split(",")[0].removeprefix("t=")
    assert got.headers["X-FHIR-Signature"] == signature("k" * 32, int(stamp), key, got.body)
    delivery = Delivery.objects.get()
    assert delivery.state == Delivery.DELIVERED and delivery.key == key
    assert delivery.attempt_set.get().status_code == 200


def test_without_payload_an_empty_post_and_deletes_notify(world, hook):
    client, admin = Client(), token("Admin")
    post(client, admin, "Subscription", subscription(url(hook)))
    obs = post(client, admin, "Observation", observation("p1")).json()
    assert client.delete(f"/fhir/Observation/{obs['id']}", **admin).status_code in (200, 204)
    worker.drain()
    assert [(r.method, r.path, r.body) for r in hook.requests] == [
        ("POST", "/hook", b""),
        ("POST", "/hook", b""),
    ]
    numbers = [r.headers["X-FHIR-Event-Number"] for r in hook.requests]
    assert numbers == ["1", "2"]


def test_with_payload_a_delete_is_a_delete(world, hook):
    client, admin = Client(), token("Admin")
    post(client, admin, "Subscription", subscription(url(hook), payload=FHIR))
    obs = post(client, admin, "Observation", observation("p1")).json()
    client.delete(f"/fhir/Observation/{obs['id']}", **admin)
    worker.drain()
    assert [(r.method, r.path) for r in hook.requests] == [
        ("PUT", f"/hook/Observation/{obs['id']}"),
        ("DELETE", f"/hook/Observation/{obs['id']}"),
    ]


def test_a_patient_is_notified_of_its_own_data_only_and_not_after_revocation(world, hook):
    client, admin = Client(), token("Admin")
    minted, secret = tokens.mint(role="Patient", identity="Patient/p1")
    patient = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    created = post(client, patient, "Subscription", subscription(url(hook), "Observation", payload=FHIR))
    assert created.status_code == 201, created.content
    sid = created.json()["id"]
    post(client, admin, "Observation", observation("p2", value=111))  # another patient's
    mine = post(client, admin, "Observation", observation("p1", value=71)).json()
    worker.drain()
    assert [r.path for r in hook.requests] == [f"/hook/Observation/{mine['id']}"]
    # Only the subscriber (and roles a rule grants) sees the Subscription.
    other = token("Patient", "Patient/p2")
    assert client.get(f"/fhir/Subscription/{sid}", **other).status_code == 404
    assert client.get(f"/fhir/Subscription/{sid}/$status", **other).status_code == 404
    assert client.get(f"/fhir/Subscription/{sid}", **patient).status_code == 200
    tokens.revoke(str(minted.pk))
    post(client, admin, "Observation", observation("p1", value=72))
    worker.drain()
    assert len(hook.requests) == 1
    # Withheld: another patient's Observation, and everything after the revocation; neither took an
    # event number, so the numbers the subscriber sees have no gaps to reveal them.
    assert Delivery.objects.filter(state=Delivery.WITHHELD).count() == 2
    assert hook.requests[0].headers["X-FHIR-Event-Number"] == "1"


def test_property_filters_shape_the_payload(world, hook):
    client = Client()
    researcher = token("Researcher")
    assert (
        post(
            client, researcher, "Subscription", subscription(url(hook), "Observation", payload=FHIR)
        ).status_code
        == 201
    )
    post(client, token("Admin"), "Observation", observation("p1"))
    worker.drain()
    sent = json.loads(hook.requests[0].body)
    assert "subject" not in sent and sent["valueQuantity"]["value"] == 70


@override_settings(FHIR_SUBSCRIPTION_RETRIES=2, FHIR_SUBSCRIPTION_BACKOFF=0.0)
def test_failures_are_retried_then_dead_and_the_subscription_in_error(world, hook):
    client, admin = Client(), token("Admin")
    sid = post(client, admin, "Subscription", subscription(url(hook))).json()["id"]
    hook.status = 500
    post(client, admin, "Observation", observation("p1"))
    worker.drain()
    assert len(hook.requests) == 3  # the first attempt and two retries
    assert len({r.headers["X-FHIR-Idempotency-Key"] for r in hook.requests}) == 1
    delivery = Delivery.objects.get()
    assert delivery.state == Delivery.DEAD and delivery.attempt_set.count() == 3
    resource = client.get(f"/fhir/Subscription/{sid}", **admin).json()
    assert resource["status"] == "error" and "HTTP 500" in resource["error"]
    status = client.get(f"/fhir/Subscription/{sid}/$status", **admin).json()
    params = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
    assert params["status"]["valueCode"] == "error"
    assert params["events-since-subscription-start"]["valueString"] == "1"
    assert "HTTP 500" in params["error"]["valueCodeableConcept"]["text"]
    # Nothing is matched for a subscription in error; a retry of the dead letter brings it back.
    hook.status = 200
    assert worker.retry_dead(subscription=sid) == 1
    worker.drain()
    assert len(hook.requests) == 4
    assert client.get(f"/fhir/Subscription/{sid}", **admin).json()["status"] == "active"
    assert Delivery.objects.get().state == Delivery.DELIVERED


def test_off_and_ended_subscriptions_are_not_notified(world, hook):
    client, admin = Client(), token("Admin")
    off = subscription(url(hook))
    off["status"] = "off"
    assert post(client, admin, "Subscription", off).json()["status"] == "off"
    ended = subscription(url(hook))
    ended["end"] = "2020-01-01T00:00:00Z"
    post(client, admin, "Subscription", ended)
    post(client, admin, "Observation", observation("p1"))
    worker.drain()
    assert hook.requests == []
    error = subscription(url(hook))
    error["status"] = "error"
    assert post(client, admin, "Subscription", error).json()["status"] == "error"
    post(client, admin, "Observation", observation("p1"))
    worker.drain()
    assert hook.requests == []


def test_a_deleted_identity_is_notified_no_more(world, hook):
    client, admin = Client(), token("Admin")
    patient = token("Patient", "Patient/p1")
    assert post(client, patient, "Subscription", subscription(url(hook), "Observation")).status_code == 201
    post(client, admin, "Observation", observation("p1"))
    worker.drain()
    assert len(hook.requests) == 1
    assert client.delete("/fhir/Patient/p1", **admin).status_code in (200, 204)
    post(client, admin, "Observation", observation("p1"))
    worker.drain()
    assert len(hook.requests) == 1


@override_settings(FHIR_SUBSCRIPTION_MAX_PER_SUBSCRIBER=2)
def test_a_subscriber_holds_a_bounded_number_of_subscriptions(world, hook):
    client, patient = Client(), token("Patient", "Patient/p1")
    for _ in range(2):
        assert (
            post(client, patient, "Subscription", subscription(url(hook), "Observation")).status_code == 201
        )
    refused = post(client, patient, "Subscription", subscription(url(hook), "Observation"))
    assert refused.status_code == 422 and "FHIR_SUBSCRIPTION_MAX_PER_SUBSCRIBER" in refused.content.decode()
    assert SubscriptionState.objects.count() == 2


def test_a_masked_secret_goes_nowhere_its_owner_did_not_send_it(world, hook):
    client, admin = Client(), token("Admin")
    patient = token("Patient", "Patient/p1")
    body = subscription(url(hook), "Observation", header=["Authorization: Bearer owner-secret"])
    sid = post(client, patient, "Subscription", body).json()["id"]
    shown = client.get(f"/fhir/Subscription/{sid}", **admin).json()
    # Another endpoint with the masked value: refused, whoever asks.
    moved = {**shown, "channel": {**shown["channel"], "endpoint": "http://127.0.0.1:9/elsewhere"}}
    refused = client.put(f"/fhir/Subscription/{sid}", json.dumps(moved), content_type=FHIR, **admin)
    assert refused.status_code == 422
    # Deleted, then created again under the same id: nothing is kept.
    assert client.delete(f"/fhir/Subscription/{sid}", **patient).status_code in (200, 204)
    revived = client.put(f"/fhir/Subscription/{sid}", json.dumps(shown), content_type=FHIR, **admin)
    assert revived.status_code == 422
    assert SubscriptionState.objects.get(fhir_id=sid).headers == ["Authorization: Bearer owner-secret"]


def test_an_endpoint_password_is_masked_and_kept(world, hook):
    client, admin = Client(), token("Admin")
    endpoint = "amqp://fhiruser:S3cretPass@127.0.0.1:5672/?routing_key=q"
    body = subscription(endpoint, "Observation")
    body["channel"]["type"] = "message"
    created = post(client, admin, "Subscription", body)
    assert created.status_code == 201, created.content
    shown = created.json()
    assert "S3cretPass" not in created.content.decode()
    assert shown["channel"]["endpoint"] == "amqp://fhiruser:****@127.0.0.1:5672/?routing_key=q"
    sid = shown["id"]
    assert b"S3cretPass" not in client.get(f"/fhir/Subscription/{sid}/_history", **admin).content
    shown["reason"] = "changed"
    assert (
        client.put(f"/fhir/Subscription/{sid}", json.dumps(shown), content_type=FHIR, **admin).status_code
        == 200
    )
    assert SubscriptionState.objects.get(fhir_id=sid).endpoint == endpoint
    elsewhere = {**shown, "channel": {**shown["channel"], "endpoint": "amqp://fhiruser:****@127.0.0.2:5672/"}}
    assert (
        client.put(f"/fhir/Subscription/{sid}", json.dumps(elsewhere), content_type=FHIR, **admin).status_code
        == 422
    )


@pytest.mark.parametrize(
    ("endpoint", "header"),
    [
        ("http://[127.0.0.1]/x", None),
        ("http://[zz::1]/x", None),
        ("http://[::ffff:10.0.0.1]/x", None),
        ("http://[64:ff9b::a9fe:a9fe]/x", None),
        ("http://[2002:a00:1::]/x", None),
        ("http://[::7f00:1]/x", None),
        ("http://127.0.0.1:9/x", "X-A: 日本語"),
        ("http://127.0.0.1:9/x", "X-A: " + "a" * 5000),
    ],
)
def test_malformed_and_disguised_endpoints_and_headers_are_refused(world, endpoint, header):
    body = subscription(endpoint, "Observation")
    if header:
        body["channel"]["header"] = [header]
    with override_settings(FHIR_SUBSCRIPTION_ALLOWED_ENDPOINTS="127.0.0.1" if header else ""):
        answer = post(Client(), token("Admin"), "Subscription", body)
    assert answer.status_code in (400, 422), answer.content
    assert answer.json()["resourceType"] == "OperationOutcome"


def test_the_idempotency_key_does_not_count_the_servers_events(world, hook):
    from subscriptions.matching import idempotency_key

    assert idempotency_key(1, 1) != idempotency_key(2, 1)
    assert idempotency_key(1, 1) == idempotency_key(1, 1)
    # Keyed with the server's secret: without it, nobody can work back from a key to the event.
    with override_settings(SECRET_KEY="another-" + "k" * 50):
        other = idempotency_key(1, 1)
    assert other != idempotency_key(1, 1)


def test_a_subscription_past_its_end_is_off(world, hook):
    client, admin = Client(), token("Admin")
    body = subscription(url(hook))
    body["end"] = "2020-01-01T00:00:00Z"
    assert post(client, admin, "Subscription", body).json()["status"] == "off"
    soon = subscription(url(hook))
    soon["end"] = (timezone.now() + timedelta(seconds=1)).isoformat()
    sid = post(client, admin, "Subscription", soon).json()["id"]
    time.sleep(1.2)
    worker.drain()
    assert client.get(f"/fhir/Subscription/{sid}", **admin).json()["status"] == "off"
