"""rest-hook delivery (https://hl7.org/fhir/R4/subscription.html#2.46.7.1).

- No payload (`channel.payload` absent): an empty `POST` to the endpoint, for every event, deletes
  included; the receiver then asks the server what changed.
- Payload `application/fhir+json`: `PUT [endpoint]/[type]/[id]` with the resource as the
  subscriber's read shows it (property filters applied); a delete is `DELETE [endpoint]/[type]/[id]`.

The subscription's `channel.header` values are sent as given, beside the headers every HTTP delivery
carries (channels/http.py: idempotency key, event number, optional signature).
"""

from __future__ import annotations

from . import http
from .base import Notification, Outcome


def send(notification: Notification, timeout: float) -> Outcome:
    if not notification.payload:
        method, url, body = "POST", notification.endpoint, b""
    else:
        url = f"{notification.endpoint.rstrip('/')}/{notification.resource_type}/{notification.fhir_id}"
        if notification.action == "delete" or notification.body is None:
            method, body = "DELETE", b""
        else:
            method, body = "PUT", notification.body.encode()
    return http.request(
        method,
        url,
        body=body,
        content_type="application/fhir+json; fhirVersion=4.0" if body else None,
        headers=notification.headers,
        key=notification.key,
        number=notification.number,
        timeout=timeout,
    )
