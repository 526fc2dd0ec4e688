"""The channels a notification travels by: one module per `Subscription.channel.type`.

Each module has `send(notification, timeout) -> Outcome` and decides nothing about access: what it
is given has been decided and shaped by the door for the subscriber (interactions/notify.py).
"""

from __future__ import annotations

from importlib import import_module

from .base import Notification, Outcome

_MODULES = {"rest-hook": "rest_hook", "websocket": "websocket", "email": "email", "message": "message"}


def send(notification: Notification, timeout: float) -> Outcome:
    module = _MODULES.get(notification.channel_type)
    if module is None:
        return Outcome(False, error=f"channel type '{notification.channel_type}' is not supported")
    return import_module(f"{__name__}.{module}").send(notification, timeout)


__all__ = ["Notification", "Outcome", "send"]
