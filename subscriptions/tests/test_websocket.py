"""The websocket channel (subscription.html#2.46.7.2): the protocol of subscriptions/consumers.py
driven in memory with Channels' WebsocketCommunicator, pings sent by channels/websocket.py through
the in-memory layer, replay from Delivery rows, and the CapabilityStatement's endpoint.

The consumer runs on the communicator's event loop; its database work comes back to the test's
thread through database_sync_to_async, which closes connections around each call: so these tests
commit (transactional_db), as Channels' own documentation advises."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import BaseChannelLayer
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from audit.models import AuditEntry
from authz import ruleset, tokens
from authz.authentication import authenticate_bearer
from authz.models import ApiToken
from fhirplatform.asgi import application
from interactions import write
from subscriptions.channels import Notification, websocket
from subscriptions.consumers import CLOSE_UNAUTHORIZED
from subscriptions.models import Delivery, SubscriptionState

RULES = """
rules:
  - {name: admin-all, role: Admin, resource: "*", operation: "*", validator: Allowed}
  - name: watcher-shared
    role: Watcher
    resource: [Subscription]
    operation: [read]
    validator: {FhirPath: {expression: "reason = 'shared'"}}
"""
PATH = "/fhir/websocket"


@pytest.fixture(autouse=True)
def _setup(settings):
    from authz.rules import forget_rules

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    forget_rules()
    yield
    forget_rules()


@pytest.fixture
def admin(transactional_db) -> str:
    return tokens.mint(role="Admin", label="websocket tests")[1]


def _subscription(secret: str, *, reason: str = "r", channel: dict | None = None) -> str:
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": reason,
        "criteria": "Observation",
        "channel": channel or {"type": "websocket"},
    }
    ctx = authenticate_bearer(f"Bearer {secret}")
    return write.create(ctx, resource_type="Subscription", body=body).stored.fhir_id


def _notification(fhir_id: str, number: int) -> Notification:
    return Notification(
        subscription_id=fhir_id,
        channel_type="websocket",
        endpoint="",
        payload="",
        headers=(),
        action="create",
        resource_type="Observation",
        fhir_id="o1",
        version=1,
        number=number,
        key=f"key-{fhir_id}-{number}",
        base_url="http://testserver/fhir",
    )


async def _notify(fhir_id: str, number: int) -> None:
    # The worker calls send() from a thread of its own; sync_to_async gives it one.
    outcome = await sync_to_async(websocket.send)(_notification(fhir_id, number), 5)
    assert outcome.ok, outcome.error


async def _open(secret: str | None = None) -> WebsocketCommunicator:
    headers = [(b"authorization", f"Bearer {secret}".encode())] if secret else []
    socket = WebsocketCommunicator(application, PATH, headers=headers)
    connected, _ = await socket.connect()
    assert connected
    return socket


async def _say(socket: WebsocketCommunicator, text: str) -> str:
    await socket.send_to(text_data=text)
    return await socket.receive_from(timeout=5)


def run(scenario) -> None:
    async_to_sync(scenario)()


def test_bind_is_answered_bound_and_each_notification_is_a_ping(admin):
    sid = _subscription(admin)

    async def scenario():
        socket = await _open(admin)
        assert await _say(socket, f"bind {sid}") == f"bound {sid}"
        await _notify(sid, 1)
        assert await socket.receive_from(timeout=5) == f"ping {sid}"
        await _notify(sid, 2)
        assert await socket.receive_from(timeout=5) == f"ping {sid}"
        assert await socket.receive_nothing(timeout=0.2)
        await socket.disconnect()

    run(scenario)
    # The bind was decided and audited as a read of that Subscription, over the websocket transport.
    row = AuditEntry.objects.filter(http_method="BIND").get()
    assert (row.operation, row.resource_type, row.resource_id, row.status) == (
        "read",
        "Subscription",
        sid,
        200,
    )


def test_unknown_and_unreadable_subscriptions_are_answered_alike(admin):
    ruleset.replace_rules(ruleset.parse_yaml(RULES))
    shared = _subscription(admin, reason="shared")
    secret = _subscription(admin, reason="secret")
    rest_hook = _subscription(
        admin, reason="shared", channel={"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook"}
    )
    watcher = tokens.mint(role="Watcher")[1]

    async def scenario():
        socket = await _open(watcher)
        refused = await _say(socket, f"bind {secret}")
        missing = await _say(socket, "bind nosuchsubscription")
        assert refused == f"error {secret} no such subscription"
        assert refused.replace(secret, "X") == missing.replace("nosuchsubscription", "X")
        # What the caller may read, it is told about: this one is not a websocket subscription.
        assert await _say(socket, f"bind {rest_hook}") == (
            f"error {rest_hook} Subscription/{rest_hook} is not a websocket subscription "
            "(channel.type 'rest-hook')"
        )
        assert await _say(socket, f"bind {shared}") == f"bound {shared}"
        # The refused bind joined no group: its notifications do not reach this socket.
        await _notify(secret, 1)
        assert await socket.receive_nothing(timeout=0.3)
        await _notify(shared, 1)
        assert await socket.receive_from(timeout=5) == f"ping {shared}"
        await socket.disconnect()

    run(scenario)
    statuses = dict(AuditEntry.objects.filter(http_method="BIND").values_list("resource_id", "status"))
    assert statuses == {secret: 404, "nosuchsubscription": 404, rest_hook: 422, shared: 200}


def test_a_deleted_subscription_is_answered_like_a_missing_one(admin):
    sid = _subscription(admin)
    write.delete(authenticate_bearer(f"Bearer {admin}"), resource_type="Subscription", fhir_id=sid)

    async def scenario():
        socket = await _open(admin)
        # The Admin's rule allows every Subscription, so a read would say 410 Gone; a bind does not.
        assert await _say(socket, f"bind {sid}") == f"error {sid} no such subscription"
        await socket.disconnect()

    run(scenario)


def test_a_bad_token_is_refused(admin):
    async def scenario():
        socket = WebsocketCommunicator(application, PATH, headers=[(b"authorization", b"Bearer fpt_nope")])
        connected, _ = await socket.connect()
        assert not connected  # the handshake itself is refused

        socket = await _open()
        assert await _say(socket, "bind-with-token fpt_nope") == "error bind-with-token: Unknown API token"
        assert (await socket.receive_output(timeout=5)) == {
            "type": "websocket.close",
            "code": CLOSE_UNAUTHORIZED,
        }

    run(scenario)
    refused = AuditEntry.objects.filter(operation="bind", status=401)
    assert refused.count() == 2 and {r.outcome for r in refused} == {"denied"}


def test_bind_with_token_authenticates_a_socket_opened_without_header(admin):
    sid = _subscription(admin)
    one_time = tokens.mint(role="Admin", kind=ApiToken.ONE_TIME)[1]

    async def scenario():
        socket = await _open()
        assert (await _say(socket, f"bind {sid}")).startswith(f"error {sid} authentication required")
        assert await _say(socket, f"bind-with-token {one_time}") == "authenticated"
        assert await _say(socket, f"bind {sid}") == f"bound {sid}"
        assert (await _say(socket, f"bind-with-token {admin}")).startswith("error bind-with-token: ")
        await _notify(sid, 1)
        assert await socket.receive_from(timeout=5) == f"ping {sid}"
        await socket.disconnect()

        # A one-time token is spent by the first socket.
        again = await _open()
        assert await _say(again, f"bind-with-token {one_time}") == (
            "error bind-with-token: One-time token has already been used"
        )

    run(scenario)


def test_several_subscriptions_on_one_socket(admin):
    first, second = _subscription(admin), _subscription(admin)

    async def scenario():
        both = await _open(admin)
        only_first = await _open(admin)
        assert await _say(both, f"bind {first}") == f"bound {first}"
        assert await _say(both, f"bind {second}") == f"bound {second}"
        assert await _say(only_first, f"bind {first}") == f"bound {first}"
        await _notify(second, 1)
        assert await both.receive_from(timeout=5) == f"ping {second}"
        assert await only_first.receive_nothing(timeout=0.3)
        await _notify(first, 1)
        assert await both.receive_from(timeout=5) == f"ping {first}"
        assert await only_first.receive_from(timeout=5) == f"ping {first}"
        assert await _say(both, f"unbind {first}") == f"unbound {first}"
        await _notify(first, 2)
        assert await only_first.receive_from(timeout=5) == f"ping {first}"
        assert await both.receive_nothing(timeout=0.3)
        await both.disconnect()
        await only_first.disconnect()

    run(scenario)


def test_a_revoked_credential_ends_the_socket_at_its_next_ping_or_bind(admin, settings):
    settings.FHIR_WEBSOCKET_RECHECK_SECONDS = 0  # every ping decides its binding again
    sid = _subscription(admin)
    token, secret = tokens.mint(role="Admin", label="to revoke")

    async def scenario():
        socket = await _open(secret)
        assert await _say(socket, f"bind {sid}") == f"bound {sid}"
        await _notify(sid, 1)
        assert await socket.receive_from(timeout=5) == f"ping {sid}"
        await sync_to_async(tokens.revoke)(str(token.pk))
        await _notify(sid, 2)
        assert await socket.receive_from(timeout=5) == "error credential no longer valid: authenticate again"
        assert (await socket.receive_output(timeout=5)) == {
            "type": "websocket.close",
            "code": CLOSE_UNAUTHORIZED,
        }

        late = await _open(admin)
        other, other_secret = await sync_to_async(tokens.mint)(role="Admin")
        unlucky = await _open(other_secret)
        await sync_to_async(tokens.revoke)(str(other.pk))
        assert await _say(unlucky, f"bind {sid}") == "error credential no longer valid: authenticate again"
        await late.disconnect()

    run(scenario)
    assert AuditEntry.objects.filter(http_method="BIND", status=401, resource_id=sid).count() == 1


def test_a_binding_no_longer_readable_is_dropped_at_its_next_ping(admin, settings):
    settings.FHIR_WEBSOCKET_RECHECK_SECONDS = 0
    ruleset.replace_rules(ruleset.parse_yaml(RULES))
    sid = _subscription(admin, reason="shared")
    watcher = tokens.mint(role="Watcher")[1]

    async def scenario():
        socket = await _open(watcher)
        assert await _say(socket, f"bind {sid}") == f"bound {sid}"
        await _notify(sid, 1)
        assert await socket.receive_from(timeout=5) == f"ping {sid}"
        body = {
            "resourceType": "Subscription",
            "id": sid,
            "status": "active",
            "reason": "secret now",
            "criteria": "Observation",
            "channel": {"type": "websocket"},
        }
        ctx = await sync_to_async(authenticate_bearer)(f"Bearer {admin}")
        await sync_to_async(write.update)(ctx, resource_type="Subscription", fhir_id=sid, body=body)
        await _notify(sid, 2)
        assert await socket.receive_from(timeout=5) == f"error {sid} no such subscription"
        await _notify(sid, 3)
        assert await socket.receive_nothing(timeout=0.3)
        await socket.disconnect()

    run(scenario)
    assert AuditEntry.objects.filter(http_method="RECHECK").count() == 2  # allowed once, then refused


def _deliveries(sid: str, states: dict[int, str]) -> None:
    state = SubscriptionState.objects.get(fhir_id=sid)
    for number, status in states.items():
        Delivery.objects.create(
            subscription=state,
            event_id=number,
            action="create",
            resource_type="Observation",
            fhir_id=f"o{number}",
            version=1,
            resource_pk=number,
            number=number,
            key=f"{sid}-{number}",
            state=status,
            next_attempt=timezone.now(),
        )


def test_replay_from_a_cursor_then_numbered_live_pings(admin):
    sid = _subscription(admin)
    delivered, withheld, pending = Delivery.DELIVERED, Delivery.WITHHELD, Delivery.PENDING
    _deliveries(sid, {1: delivered, 2: delivered, 3: withheld, 4: pending, 5: delivered})

    async def scenario():
        socket = await _open(admin)
        assert await _say(socket, f"bind {sid} 1") == f"bound {sid}"
        # Only what was delivered after the cursor, in order: not 3 (withheld) nor 4 (not sent yet).
        assert await socket.receive_from(timeout=5) == f"ping {sid} 2"
        assert await socket.receive_from(timeout=5) == f"ping {sid} 5"
        assert await socket.receive_from(timeout=5) == f"replayed {sid} 5"
        # A live notification the replay already sent is not sent twice; the next one carries its number.
        await _notify(sid, 5)
        await _notify(sid, 6)
        assert await socket.receive_from(timeout=5) == f"ping {sid} 6"
        assert await socket.receive_nothing(timeout=0.2)

        # A plain R4 bind on another socket sees neither replay nor numbers.
        plain = await _open(admin)
        assert await _say(plain, f"bind {sid}") == f"bound {sid}"
        assert await plain.receive_nothing(timeout=0.2)
        await _notify(sid, 7)
        assert await plain.receive_from(timeout=5) == f"ping {sid}"
        assert await socket.receive_from(timeout=5) == f"ping {sid} 7"

        # Nothing missed: the replay is empty and says where the client stands.
        assert await _say(socket, f"bind {sid} 7") == f"bound {sid}"
        assert await socket.receive_from(timeout=5) == f"replayed {sid} 7"
        assert (
            await _say(socket, f"bind {sid} -1")
            == f"error {sid} the event number must be a non-negative integer"
        )
        await socket.disconnect()
        await plain.disconnect()

    run(scenario)


def test_replay_is_bounded(admin, settings):
    settings.FHIR_WEBSOCKET_REPLAY_LIMIT = 2
    sid = _subscription(admin)
    _deliveries(sid, dict.fromkeys(range(1, 6), Delivery.DELIVERED))

    async def scenario():
        socket = await _open(admin)
        assert await _say(socket, f"bind {sid} 0") == f"bound {sid}"
        assert [await socket.receive_from(timeout=5) for _ in range(3)] == [
            f"ping {sid} 1",
            f"ping {sid} 2",
            f"replayed {sid} 2 more",
        ]
        assert await _say(socket, f"bind {sid} 4") == f"bound {sid}"
        assert await socket.receive_from(timeout=5) == f"ping {sid} 5"
        assert await socket.receive_from(timeout=5) == f"replayed {sid} 5"
        await socket.disconnect()

    run(scenario)


def test_unknown_messages_are_answered_with_the_protocol(admin):
    async def scenario():
        socket = await _open(admin)
        assert (await _say(socket, "hello")).startswith("error expected 'bind <id>'")
        assert await _say(socket, "bind ../../etc") == "error ../../etc no such subscription"
        await socket.disconnect()

    run(scenario)


def test_group_names_are_valid_for_every_id():
    layer = BaseChannelLayer()
    for fhir_id in ("a", "A-1.b", "x" * 64, "not/an id", "é" * 80):
        assert layer.require_valid_group_name(websocket.group_name(fhir_id))
    assert websocket.group_name("a") != websocket.group_name("b")


def test_the_capability_statement_names_the_websocket_endpoint(db):
    statement = json.loads(Client().get("/fhir/metadata").content)
    (extension,) = [
        e
        for e in statement["rest"][0].get("extension", [])
        if e["url"] == "http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket"
    ]
    assert extension["valueUri"] == "ws://testserver/fhir/websocket"
    secure = json.loads(Client().get("/fhir/metadata", secure=True).content)
    assert secure["rest"][0]["extension"][0]["valueUri"] == "wss://testserver/fhir/websocket"
