"""websocket delivery (https://hl7.org/fhir/R4/subscription.html#2.46.7.2): a message to the
Channels group of the Subscription, which every socket bound to it has joined (consumers.py turns
it into `ping <id>`).

A notification counts as delivered once the channel layer took it: the R4 protocol has no
acknowledgement, and a client that was away asks for what it missed by its event number when it
binds again (docs/subscriptions.md, "WebSocket"). The message carries the subscription's id and
event number only, never content: `ping` tells the client to come and search.

Channels' in-memory layer (the embedded mode, no Redis) keeps plain asyncio queues, which only the
event loop serving the sockets may touch; a worker thread that called `async_to_sync` would run the
send on a loop of its own. So while a server loop is known (`serving_loop`, recorded by the
consumer) the send is handed to that loop; a layer such as channels_redis is used from any loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

from .base import Notification, Outcome

MESSAGE_TYPE = "subscription.ping"
# Channels' group names: ASCII letters, digits, '-', '_' and '.', under 100 characters. FHIR ids
# ([A-Za-z0-9-.]{1,64}) always fit; anything else is hashed rather than refused.
_GROUP_SAFE = re.compile(r"^[A-Za-z0-9.-]{1,64}$")
_loop: asyncio.AbstractEventLoop | None = None


def group_name(subscription_id: str) -> str:
    if _GROUP_SAFE.match(subscription_id):
        return f"fhir-subscription.{subscription_id}"
    return f"fhir-subscription.h-{hashlib.sha256(subscription_id.encode()).hexdigest()[:40]}"


def message(subscription_id: str, number: int) -> dict:
    return {"type": MESSAGE_TYPE, "subscription": subscription_id, "number": number}


def serving_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Record the event loop that serves the sockets of this process (called by the consumer)."""
    global _loop
    _loop = loop


def send(notification: Notification, timeout: float) -> Outcome:
    layer = get_channel_layer()
    if layer is None:
        return Outcome(False, error="no channel layer is configured (CHANNEL_LAYERS)")
    group = group_name(notification.subscription_id)
    payload = message(notification.subscription_id, notification.number)
    started = time.monotonic()
    try:
        loop = _loop
        if isinstance(layer, InMemoryChannelLayer) and loop is not None and loop.is_running():
            if _on_loop(loop):
                # Already on the serving loop (a test driving the consumer): no thread hop.
                raise RuntimeError("websocket.send is synchronous; call it from a worker thread")
            asyncio.run_coroutine_threadsafe(layer.group_send(group, payload), loop).result(timeout)
        else:
            async_to_sync(_bounded)(layer.group_send(group, payload), timeout)
    except TimeoutError:
        return Outcome(False, error=f"the channel layer did not take the message within {timeout} s")
    except Exception as exc:  # the layer's failures (Redis down...) are the outcome, not a crash
        return Outcome(False, error=f"{type(exc).__name__}: {exc}"[:500])
    return Outcome(True, latency_ms=int((time.monotonic() - started) * 1000))


async def _bounded(coroutine, timeout: float) -> None:
    await asyncio.wait_for(coroutine, timeout)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
