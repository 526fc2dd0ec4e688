"""The channels a notification travels by: one module per `Subscription.channel.type`.

Each module has `send(notification, timeout) -> Outcome` and decides nothing about access: what it
is given has been decided and shaped by the door for the subscriber (interactions/notify.py).
"""

from __future__ import annotations

from .base import Notification, Outcome


def send(notification: Notification, timeout: float) -> Outcome:
    from . import email, message, rest_hook, websocket

    sender = {
        "rest-hook": rest_hook.send,
        "websocket": websocket.send,
        "email": email.send,
        "message": message.send,
    }.get(notification.channel_type)
    if sender is None:
        return Outcome(False, error=f"channel type '{notification.channel_type}' is not supported")
    return sender(notification, timeout)


__all__ = ["Notification", "Outcome", "send"]
