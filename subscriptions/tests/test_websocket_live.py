"""The WebSocket endpoint served by real server processes, driven by a real WebSocket client
(aiohttp): daphne as an operator starts it, daphne over a private Redis (the production channel
layer, so that a notification sent by another process reaches the socket), and `manage.py runserver
--insecure` as `make run` starts it (static files still served, the WebSocket endpoint too)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time

import aiohttp
import pytest
import requests

from tests.conftest import LiveServer, serve

pytestmark = pytest.mark.live


def _ws_url(live: LiveServer) -> str:
    return live.url.replace("http://", "ws://", 1) + "/websocket"


def _subscription(live: LiveServer, token: str) -> str:
    response = requests.post(
        f"{live.url}/Subscription",
        json={
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "live",
            "criteria": "Observation",
            "channel": {"type": "websocket"},
        },
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _delivered(live: LiveServer, sid: str, numbers: list[int]) -> None:
    """Delivery rows as the worker leaves them, written behind the server's back."""
    code = (
        "from django.utils import timezone;"
        "from subscriptions.models import Delivery, SubscriptionState;"
        f"s = SubscriptionState.objects.get(fhir_id='{sid}');"
        f"[Delivery.objects.create(subscription=s, event_id=n, action='create', resource_type='Observation',"
        f" fhir_id='o', version=1, resource_pk=n, number=n, key=f'{sid}-{{n}}', state='delivered',"
        f" next_attempt=timezone.now()) for n in {numbers!r}]"
    )
    live.manage("shell", "-c", code)


async def _text(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10) -> str:
    while True:
        message = await ws.receive(timeout=timeout)
        if message.type == aiohttp.WSMsgType.PING:
            await ws.pong(message.data)
            continue
        assert message.type == aiohttp.WSMsgType.TEXT, message
        return message.data


@pytest.fixture(scope="module")
def daphne():
    # The embedded mode: no broker, the worker in the server process, the in-memory channel layer.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FHIR_WORKER", "embedded")
        patch.setenv("FHIR_WORKER_SWEEP_SECONDS", "1")
        yield from serve(
            lambda port: [
                "daphne",
                "--ping-interval",
                "1",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "fhirplatform.asgi:application",
            ]
        )


def test_a_write_reaches_a_bound_socket_through_the_embedded_worker(daphne):
    token = daphne.token("--role", "Admin", "--label", "websocket end to end")
    sid = _subscription(daphne, token)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"}}

    async def scenario():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(
                _ws_url(daphne), headers={"Authorization": f"Bearer {token}"}
            ) as ws:
                await ws.send_str(f"bind {sid} 0")
                assert [await _text(ws) for _ in range(2)] == [f"bound {sid}", f"replayed {sid} 0"]
                for _ in range(2):
                    async with session.post(
                        f"{daphne.url}/Observation", json=observation, headers=headers
                    ) as r:
                        assert r.status == 201, await r.text()
                assert [await _text(ws, timeout=20) for _ in range(2)] == [f"ping {sid} 1", f"ping {sid} 2"]
            # Away, a third one; back, it is replayed from the cursor.
            async with session.post(f"{daphne.url}/Observation", json=observation, headers=headers) as r:
                assert r.status == 201
            deadline = time.monotonic() + 20
            while True:  # a fresh socket each time, until the worker has delivered it
                async with session.ws_connect(
                    _ws_url(daphne), headers={"Authorization": f"Bearer {token}"}
                ) as ws:
                    await ws.send_str(f"bind {sid} 2")
                    answers = [await _text(ws), await _text(ws)]
                    if answers[1] != f"replayed {sid} 2" or time.monotonic() > deadline:
                        assert answers == [f"bound {sid}", f"ping {sid} 3"]
                        assert await _text(ws) == f"replayed {sid} 3"
                        break
                await asyncio.sleep(0.2)

    asyncio.run(scenario())


def test_daphne_binds_replays_and_keeps_the_socket_alive_with_ping_frames(daphne):
    token = daphne.token("--role", "Admin", "--label", "websocket live")
    sid = _subscription(daphne, token)
    _delivered(daphne, sid, [1, 2, 3])

    async def scenario():
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(_ws_url(daphne), headers={"Authorization": "Bearer fpt_nope"})
            assert refused.value.status == 403

            headers = {"Authorization": f"Bearer {token}"}
            async with session.ws_connect(_ws_url(daphne), headers=headers, autoping=False) as ws:
                await ws.send_str(f"bind {sid} 1")
                assert [await _text(ws) for _ in range(4)] == [
                    f"bound {sid}",
                    f"ping {sid} 2",
                    f"ping {sid} 3",
                    f"replayed {sid} 3",
                ]
                # Heartbeats are ping frames (daphne --ping-interval), never text messages.
                message = await ws.receive(timeout=5)
                assert message.type == aiohttp.WSMsgType.PING
                await ws.pong(message.data)

            # A browser: no header, the token in R5's bind-with-token message.
            async with session.ws_connect(_ws_url(daphne)) as ws:
                await ws.send_str(f"bind-with-token {token}")
                assert await _text(ws) == "authenticated"
                await ws.send_str(f"bind {sid}")
                assert await _text(ws) == f"bound {sid}"

    asyncio.run(scenario())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url():
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    workdir = tempfile.TemporaryDirectory()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir.name],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
        workdir.cleanup()


@pytest.fixture(scope="module")
def daphne_on_redis(redis_url):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REDIS_URL", redis_url)
        patch.setenv("FHIR_WORKER", "manual")  # no worker: the test sends the notification itself
        yield from serve(
            lambda port: ["daphne", "-b", "127.0.0.1", "-p", str(port), "fhirplatform.asgi:application"]
        )


def test_a_notification_sent_by_another_process_reaches_the_socket(daphne_on_redis, redis_url, settings):
    from subscriptions.channels import Notification, websocket

    live = daphne_on_redis
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [redis_url]}}
    }
    token = live.token("--role", "Admin", "--label", "websocket live redis")
    sid = _subscription(live, token)
    notification = Notification(
        subscription_id=sid,
        channel_type="websocket",
        endpoint="",
        payload="",
        headers=(),
        action="create",
        resource_type="Observation",
        fhir_id="o1",
        version=1,
        number=1,
        key="k1",
        base_url=live.url,
    )

    async def scenario():
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": f"Bearer {token}"}
            async with session.ws_connect(_ws_url(live), headers=headers) as ws:
                await ws.send_str(f"bind {sid}")
                assert await _text(ws) == f"bound {sid}"
                outcome = await asyncio.to_thread(websocket.send, notification, 5)
                assert outcome.ok, outcome.error
                assert await _text(ws) == f"ping {sid}"

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def runserver():
    yield from serve(lambda port: ["django", "runserver", "--insecure", "--noreload", f"127.0.0.1:{port}"])


def test_runserver_serves_static_files_and_the_websocket_endpoint(runserver):
    root = runserver.url.removesuffix("/fhir")
    css = requests.get(f"{root}/static/admin/css/base.css", timeout=10)
    assert css.status_code == 200 and "text/css" in css.headers["Content-Type"]
    token = runserver.token("--role", "Admin", "--label", "websocket runserver")
    sid = _subscription(runserver, token)

    async def scenario():
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": f"Bearer {token}"}
            async with session.ws_connect(_ws_url(runserver), headers=headers) as ws:
                await ws.send_str(f"bind {sid}")
                assert await _text(ws) == f"bound {sid}"

    asyncio.run(scenario())
