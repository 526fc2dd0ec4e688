"""The message channel end to end (channels/message.py): the FHIR message it builds, checked by the
project's R4 validator, delivered to real local receivers (an HTTP server, Redis Streams, RabbitMQ)."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from django.test import override_settings

from resources import fhirjson
from resources.validation import validate_resource
from subscriptions.channels import message
from subscriptions.channels.base import Notification

from .receivers import HttpReceiver, SilentReceiver, free_port

PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {"versionId": "3", "lastUpdated": "2026-12-04T10:00:00.000Z"},
    "name": [{"family": "Chalmers", "given": ["Peter"]}],
    "birthDate": "1974-12-25",
}
LOCAL_ONLY_IPV6 = "::1,localhost"  # the test allow-list without 127.0.0.1


def notification(endpoint: str, **changes) -> Notification:
    values = {
        "subscription_id": "sub1",
        "channel_type": "message",
        "endpoint": endpoint,
        "payload": "application/fhir+json",
        "headers": ("Authorization: Bearer receiver-secret",),
        "action": "update",
        "resource_type": "Patient",
        "fhir_id": "p1",
        "version": 3,
        "number": 7,
        "key": str(uuid.uuid4()),
        "base_url": "https://fhir.example.org/fhir",
        "body": fhirjson.dumps(PATIENT),
        "timestamp": "2026-12-04T10:00:00.123Z",
    }
    values.update(changes)
    return Notification(**values)


def assert_valid_message(bundle: dict, n: Notification) -> None:
    assert validate_resource(fhirjson.loads(fhirjson.dumps(bundle))) == []
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "message"
    assert bundle["id"] == n.key
    assert bundle["identifier"] == {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{n.key}"}
    assert bundle["timestamp"] == n.timestamp
    header = bundle["entry"][0]["resource"]
    assert header["resourceType"] == "MessageHeader"
    assert bundle["entry"][0]["fullUrl"] == f"urn:uuid:{header['id']}"
    assert header["eventCoding"]["system"] == "http://hl7.org/fhir/restful-interaction"
    assert header["eventCoding"]["code"] == n.action
    assert header["source"]["endpoint"] == n.base_url
    assert header["focus"] == [{"reference": f"{n.base_url}/Patient/p1"}]


# -- the message ---------------------------------------------------------------------------------


def test_the_bundle_is_a_valid_r4_message_with_the_resource():
    n = notification("https://receiver.example.org/fhir/$process-message")
    bundle = message.bundle(n)
    assert_valid_message(bundle, n)
    assert len(bundle["entry"]) == 2
    assert bundle["entry"][1] == {"fullUrl": "https://fhir.example.org/fhir/Patient/p1", "resource": PATIENT}
    header = bundle["entry"][0]["resource"]
    assert header["destination"] == [{"endpoint": "https://receiver.example.org/fhir/$process-message"}]


def test_without_a_payload_or_on_delete_only_the_header_is_sent():
    for n in (
        notification("https://r.example.org/", body=None, payload=""),
        notification("https://r.example.org/", body=None, action="delete"),
    ):
        bundle = message.bundle(n)
        assert_valid_message(bundle, n)
        assert len(bundle["entry"]) == 1


def test_ids_are_stable_for_one_notification_and_differ_between_notifications():
    n = notification("https://r.example.org/")
    first, again = message.bundle(n), message.bundle(n)
    other = message.bundle(notification("https://r.example.org/"))
    assert first["entry"][0]["resource"]["id"] == again["entry"][0]["resource"]["id"]
    assert first["id"] == again["id"] != other["id"]
    assert first["entry"][0]["resource"]["id"] != other["entry"][0]["resource"]["id"]
    assert first["entry"][0]["resource"]["id"] != first["id"]


def test_a_missing_timestamp_is_the_time_of_building():
    bundle = message.bundle(notification("https://r.example.org/", timestamp=""))
    assert validate_resource(fhirjson.loads(fhirjson.dumps(bundle))) == []
    assert bundle["timestamp"].startswith(time.strftime("%Y-", time.gmtime()))


@pytest.mark.parametrize(
    ("endpoint", "shown"),
    [
        (
            "https://user:pw@r.example.org/fhir/$process-message?token=abc#x",
            "https://r.example.org/fhir/$process-message",
        ),
        (
            "redis://:secret@cache.example.org:6380/2?stream=fhir&password=p",
            "redis://cache.example.org:6380/2?stream=fhir",
        ),
        (
            "amqps://bob:pw@mq.example.org/prod?exchange=fhir&routing_key=obs&auth=x",
            "amqps://mq.example.org/prod?exchange=fhir&routing_key=obs",
        ),
        ("http://[::1]:8080/in", "http://[::1]:8080/in"),
    ],
)
def test_the_destination_never_shows_credentials(endpoint, shown):
    assert message.public_endpoint(endpoint) == shown
    text = fhirjson.dumps(message.bundle(notification(endpoint)))
    assert "pw" not in text and "secret" not in text and "token" not in text
    assert "receiver-secret" not in text  # channel.header values stay in the transport


# -- http(s) -------------------------------------------------------------------------------------


def test_http_posts_the_message_with_the_subscription_headers():
    with HttpReceiver() as receiver:
        n = notification(receiver.url + "/fhir/$process-message")
        outcome = message.send(n, timeout=5)
    assert outcome.ok, outcome.error
    assert outcome.status_code == 200
    [request] = receiver.requests
    assert (request.method, request.path) == ("POST", "/fhir/$process-message")
    assert request.headers["Content-Type"].startswith("application/fhir+json")
    assert request.headers["Authorization"] == "Bearer receiver-secret"
    assert request.headers["X-FHIR-Idempotency-Key"] == n.key
    assert request.headers["X-FHIR-Event-Number"] == "7"
    assert request.headers["X-FHIR-Subscription"] == "Subscription/sub1"
    bundle = json.loads(request.body)
    assert_valid_message(bundle, n)
    assert bundle["entry"][1]["resource"] == PATIENT


def test_http_error_status_is_a_failed_attempt():
    with HttpReceiver(status=503) as receiver:
        outcome = message.send(notification(receiver.url + "/in"), timeout=5)
    assert not outcome.ok and outcome.status_code == 503


@override_settings(FHIR_SUBSCRIPTION_MAX_PAYLOAD=200)
def test_payload_limit_refuses_before_sending():
    with HttpReceiver() as receiver:
        outcome = message.send(notification(receiver.url + "/in"), timeout=5)
    assert not outcome.ok and "FHIR_SUBSCRIPTION_MAX_PAYLOAD" in outcome.error
    assert receiver.requests == []


@override_settings(FHIR_SUBSCRIPTION_ALLOWED_ENDPOINTS=LOCAL_ONLY_IPV6)
def test_http_to_an_unlisted_private_address_is_refused():
    with HttpReceiver() as receiver:
        outcome = message.send(notification(receiver.url + "/in"), timeout=5)
    assert not outcome.ok and "not allowed" in outcome.error
    assert receiver.requests == []


def test_http_dead_or_silent_receivers_fail_quickly():
    started = time.monotonic()
    outcome = message.send(notification(f"http://127.0.0.1:{free_port()}/in"), timeout=0.5)
    assert not outcome.ok and outcome.error
    with SilentReceiver() as silent:
        outcome = message.send(notification(f"http://127.0.0.1:{silent.port}/in"), timeout=0.5)
    assert not outcome.ok and "timed out" in outcome.error
    assert time.monotonic() - started < 3


# -- Redis Streams -------------------------------------------------------------------------------

REDIS_DB = 15


@pytest.fixture
def redis_stream():
    redis = pytest.importorskip("redis")
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at 127.0.0.1:6379 ({exc})")
    name = f"fhir-test-{uuid.uuid4()}"
    yield client, name
    client.delete(name)
    client.close()


def test_redis_appends_the_message_to_the_stream(redis_stream):
    client, stream = redis_stream
    n = notification(f"redis://127.0.0.1:6379/{REDIS_DB}?stream={stream}")
    outcome = message.send(n, timeout=5)
    assert outcome.ok, outcome.error
    [(entry_id, fields)] = client.xrange(stream)
    assert outcome.extra["stream_entry"] == entry_id.decode()
    assert fields[b"key"].decode() == n.key
    assert fields[b"subscription"] == b"Subscription/sub1"
    assert fields[b"event"] == b"7"
    assert fields[b"action"] == b"update"
    bundle = json.loads(fields[b"bundle"])
    assert_valid_message(bundle, n)
    assert bundle["entry"][0]["resource"]["destination"] == [
        {"endpoint": f"redis://127.0.0.1:6379/{REDIS_DB}?stream={stream}"}
    ]


def test_redis_with_a_wrong_password_fails_without_echoing_it(redis_stream):
    client, stream = redis_stream
    outcome = message.send(
        notification(f"redis://:s3cr3t-pw@127.0.0.1:6379/{REDIS_DB}?stream={stream}"), timeout=5
    )
    assert not outcome.ok and outcome.error
    assert "s3cr3t-pw" not in outcome.error
    assert client.xlen(stream) == 0


@override_settings(FHIR_SUBSCRIPTION_ALLOWED_ENDPOINTS=LOCAL_ONLY_IPV6)
def test_redis_to_an_unlisted_private_address_is_refused(redis_stream):
    client, stream = redis_stream
    outcome = message.send(notification(f"redis://127.0.0.1:6379/{REDIS_DB}?stream={stream}"), timeout=5)
    assert not outcome.ok and "not allowed" in outcome.error
    assert client.xlen(stream) == 0


@override_settings(FHIR_SUBSCRIPTION_MAX_PAYLOAD=200)
def test_redis_payload_limit(redis_stream):
    client, stream = redis_stream
    outcome = message.send(notification(f"redis://127.0.0.1:6379/{REDIS_DB}?stream={stream}"), timeout=5)
    assert not outcome.ok and "FHIR_SUBSCRIPTION_MAX_PAYLOAD" in outcome.error
    assert client.xlen(stream) == 0


def test_redis_dead_or_silent_receivers_fail_quickly():
    started = time.monotonic()
    outcome = message.send(notification(f"redis://127.0.0.1:{free_port()}/0?stream=s"), timeout=0.5)
    assert not outcome.ok and outcome.error
    with SilentReceiver() as silent:
        outcome = message.send(notification(f"redis://127.0.0.1:{silent.port}/0?stream=s"), timeout=0.5)
    assert not outcome.ok and "Timeout" in outcome.error
    assert time.monotonic() - started < 3


# -- RabbitMQ ------------------------------------------------------------------------------------

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture
def rabbit():
    kombu = pytest.importorskip("kombu")
    connection = kombu.Connection(AMQP_URL, connect_timeout=2)
    try:
        connection.connect()
    except Exception as exc:  # any reason the broker is not there
        pytest.skip(f"no RabbitMQ at 127.0.0.1:5672 with guest/guest ({type(exc).__name__}: {exc})")
    names: list[tuple[str, str]] = []
    yield connection, names
    channel = connection.channel()
    for kind, name in names:
        if kind == "queue":
            channel.queue_delete(queue=name)
        else:
            channel.exchange_delete(exchange=name)
    connection.release()


def _get(connection, queue: str):
    return connection.channel().basic_get(queue=queue, no_ack=True)


def test_amqp_publishes_to_a_queue_it_declares(rabbit):
    connection, names = rabbit
    queue = f"fhir-test-{uuid.uuid4()}"
    names.append(("queue", queue))
    n = notification(f"amqp://guest:guest@127.0.0.1:5672/?routing_key={queue}")
    outcome = message.send(n, timeout=5)
    assert outcome.ok, outcome.error
    received = _get(connection, queue)
    assert received is not None
    properties = received.properties
    assert properties["content_type"] == "application/fhir+json"
    assert properties["message_id"] == n.key
    assert properties["delivery_mode"] == 2
    assert properties["application_headers"]["subscription"] == "Subscription/sub1"
    assert properties["application_headers"]["event-number"] == 7
    bundle = json.loads(received.body)
    assert_valid_message(bundle, n)
    assert "guest" not in json.dumps(bundle)
    # a second notification goes to the queue as it now exists
    assert message.send(notification(n.endpoint), timeout=5).ok
    assert _get(connection, queue) is not None


def test_amqp_publishes_to_a_named_exchange(rabbit):
    connection, names = rabbit
    exchange, queue = f"fhir-test-x-{uuid.uuid4()}", f"fhir-test-{uuid.uuid4()}"
    names += [("queue", queue), ("exchange", exchange)]
    channel = connection.channel()
    channel.exchange_declare(exchange=exchange, type="direct", auto_delete=False)
    channel.queue_declare(queue=queue, auto_delete=False)
    channel.queue_bind(queue=queue, exchange=exchange, routing_key="observations")
    n = notification(f"amqp://guest:guest@127.0.0.1:5672/%2F?exchange={exchange}&routing_key=observations")
    outcome = message.send(n, timeout=5)
    assert outcome.ok, outcome.error
    received = _get(connection, queue)
    assert received is not None and received.properties["message_id"] == n.key
    # unroutable (no binding for this key): the broker returns it, the attempt fails
    outcome = message.send(
        notification(f"amqp://guest:guest@127.0.0.1/?exchange={exchange}&routing_key=none"), timeout=5
    )
    assert not outcome.ok and "NO_ROUTE" in outcome.error.upper().replace(" ", "_")


def test_amqp_to_a_missing_exchange_fails_and_declares_nothing(rabbit):
    connection, names = rabbit
    exchange = f"fhir-test-x-{uuid.uuid4()}"
    outcome = message.send(
        notification(f"amqp://guest:guest@127.0.0.1/?exchange={exchange}&routing_key=k"), timeout=5
    )
    assert not outcome.ok and outcome.error
    channel = connection.channel()
    with pytest.raises(Exception, match="NOT_FOUND|no exchange"):
        channel.exchange_declare(exchange=exchange, type="direct", passive=True)


def test_amqp_wrong_credentials_fail(rabbit):
    outcome = message.send(notification("amqp://guest:s3cr3t-pw@127.0.0.1/?routing_key=q"), timeout=5)
    assert not outcome.ok and outcome.error
    assert "s3cr3t-pw" not in outcome.error


@override_settings(FHIR_SUBSCRIPTION_ALLOWED_ENDPOINTS=LOCAL_ONLY_IPV6)
def test_amqp_to_an_unlisted_private_address_is_refused():
    outcome = message.send(notification("amqp://guest:guest@127.0.0.1:5672/?routing_key=q"), timeout=5)
    assert not outcome.ok and "not allowed" in outcome.error


@override_settings(FHIR_SUBSCRIPTION_MAX_PAYLOAD=200)
def test_amqp_payload_limit():
    outcome = message.send(notification("amqp://guest:guest@127.0.0.1:5672/?routing_key=q"), timeout=5)
    assert not outcome.ok and "FHIR_SUBSCRIPTION_MAX_PAYLOAD" in outcome.error


def test_amqp_dead_or_silent_receivers_fail_quickly():
    started = time.monotonic()
    outcome = message.send(
        notification(f"amqp://guest:guest@127.0.0.1:{free_port()}/?routing_key=q"), timeout=0.5
    )
    assert not outcome.ok and outcome.error
    with SilentReceiver() as silent:
        outcome = message.send(
            notification(f"amqp://guest:guest@127.0.0.1:{silent.port}/?routing_key=q"), timeout=0.5
        )
    assert not outcome.ok and outcome.error
    assert time.monotonic() - started < 3


def test_an_unknown_scheme_is_refused():
    outcome = message.send(notification("ftp://127.0.0.1/x"), timeout=1)
    assert not outcome.ok and "ftp" in outcome.error


def test_a_bad_port_is_a_failed_attempt_not_a_crash():
    outcome = message.send(notification("redis://127.0.0.1:99999/0?stream=s"), timeout=1)
    assert not outcome.ok and outcome.error
