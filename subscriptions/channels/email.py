"""email delivery (https://hl7.org/fhir/R4/subscription.html#2.46.7.3, channel type `email`).

The endpoint is `mailto:address` (checked by endpoints.py); the message goes through Django's email
backend (EMAIL_BACKEND: SMTP in production, the console in the embedded mode), sent from
FHIR_SUBSCRIPTION_EMAIL_FROM.

Email is not a protected channel: it travels through servers the operator does not control and is
kept in inboxes, forwarded and indexed. So by default the message carries no clinical content, and
that includes the resource's id: `Patient/123` or `Observation/abc` names a person's record to anyone
who can read the store, and the mere fact that such a record changed (an `Observation` for a patient
watched under an HIV-clinic criteria, say) can be telling. The default message says only:
- which subscription fired (`Subscription/<id>`, an id the subscriber created and the server assigned),
- the action (create, update, delete), the resource type and the subscription's event number,
- the server's FHIR base URL, where the subscriber looks the change up with their own credentials
  (a search on the criteria, `_lastUpdated`, or `Subscription/<id>/$status`), so every detail is
  read through the rule chain and audited.

With FHIR_SUBSCRIPTION_EMAIL_CONTENT true (an operator's decision, e.g. mail that stays inside a
hospital's own system), the message also names the resource (`Type/id`, version) and, when the
subscription asked for a payload and the event is not a delete, attaches the resource as the
subscriber's read shows it (`<Type>-<id>.json`, application/fhir+json).

`channel.header` values are not used: they are HTTP headers (R4 gives them no meaning for email).
"""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from .base import Notification, Outcome


def send(notification: Notification, timeout: float) -> Outcome:
    address = notification.endpoint.removeprefix("mailto:")
    message = compose(notification, address)
    size = len(message.body.encode()) + sum(len(content.encode()) for _, content, _ in message.attachments)
    if size > settings.FHIR_SUBSCRIPTION_MAX_PAYLOAD:
        return Outcome(False, error=f"message of {size} bytes exceeds FHIR_SUBSCRIPTION_MAX_PAYLOAD")
    try:
        message.connection = get_connection(timeout=timeout)
        sent = message.send()
    except Exception as exc:  # any backend's failure (SMTP, DNS, TLS, refusal) is the Outcome's error
        return Outcome(False, error=f"{type(exc).__name__}: {exc}"[:500])
    if not sent:
        return Outcome(False, error="the email backend sent nothing")
    return Outcome(True)


def compose(notification: Notification, address: str) -> EmailMessage:
    n = notification
    base = n.base_url.rstrip("/")
    lines = [
        f"FHIR subscription Subscription/{n.subscription_id} has a new notification.",
        "",
        f"Event number: {n.number}",
        f"Action: {n.action}",
        f"Resource type: {n.resource_type}",
    ]
    subject = f"FHIR subscription {n.subscription_id}: {n.action} of a {n.resource_type} (event {n.number})"
    attachments = []
    if settings.FHIR_SUBSCRIPTION_EMAIL_CONTENT:
        lines.append(f"Resource: {base}/{n.resource_type}/{n.fhir_id} (version {n.version})")
        subject = f"FHIR subscription {n.subscription_id}: {n.action} of {n.resource_type}/{n.fhir_id}"
        if n.body is not None:
            attachments.append((f"{n.resource_type}-{n.fhir_id}.json", n.body, "application/fhir+json"))
            lines.append("The resource is attached.")
    else:
        lines += [
            "",
            "This message carries no clinical content. Look the change up at the FHIR server with your",
            f"own credentials: {base} (for instance {base}/Subscription/{n.subscription_id}/$status).",
        ]
    return EmailMessage(
        subject=subject,
        body="\n".join(lines) + "\n",
        from_email=settings.FHIR_SUBSCRIPTION_EMAIL_FROM,
        to=[address],
        attachments=attachments,
        headers={"X-FHIR-Idempotency-Key": n.key, "X-FHIR-Event-Number": str(n.number)},
    )
