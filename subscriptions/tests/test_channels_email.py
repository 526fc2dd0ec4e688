"""The email channel (channels/email.py) through Django's email backends: the locmem outbox for what
the message says, a real SMTP connection for failures."""

from __future__ import annotations

import time
import uuid

from django.test import override_settings

from resources import fhirjson
from subscriptions.channels import email
from subscriptions.channels.base import Notification

from .receivers import SilentReceiver, free_port

PATIENT = {
    "resourceType": "Patient",
    "id": "pat-4711",
    "meta": {"versionId": "2", "lastUpdated": "2026-12-04T10:00:00.000Z"},
    "name": [{"family": "Chalmers", "given": ["Peter"]}],
    "birthDate": "1974-12-25",
}


def notification(**changes) -> Notification:
    values = {
        "subscription_id": "sub-42",
        "channel_type": "email",
        "endpoint": "mailto:alerts@example.org",
        "payload": "application/fhir+json",
        "headers": ("Authorization: Bearer receiver-secret",),
        "action": "update",
        "resource_type": "Patient",
        "fhir_id": "pat-4711",
        "version": 2,
        "number": 12,
        "key": str(uuid.uuid4()),
        "base_url": "https://fhir.example.org/fhir",
        "body": fhirjson.dumps(PATIENT),
        "timestamp": "2026-12-04T10:00:00.123Z",
    }
    values.update(changes)
    return Notification(**values)


def _everything(message) -> str:
    parts = [message.subject, message.body, *map(str, message.extra_headers.values())]
    parts += [str(content) for _, content, _ in message.attachments]
    return "\n".join(parts)


@override_settings(FHIR_SUBSCRIPTION_EMAIL_FROM="fhir@hospital.example.org")
def test_default_email_says_which_subscription_fired_and_nothing_clinical(mailoutbox):
    n = notification()
    outcome = email.send(n, timeout=5)
    assert outcome.ok, outcome.error
    [sent] = mailoutbox
    assert sent.to == ["alerts@example.org"]
    assert sent.from_email == "fhir@hospital.example.org"
    text = _everything(sent)
    for said in ("sub-42", "update", "Patient", "12", "https://fhir.example.org/fhir"):
        assert said in text
    for clinical in ("pat-4711", "Chalmers", "Peter", "1974", "receiver-secret"):
        assert clinical not in text
    assert sent.attachments == []
    assert sent.extra_headers["X-FHIR-Idempotency-Key"] == n.key


@override_settings(FHIR_SUBSCRIPTION_EMAIL_CONTENT=True)
def test_content_when_the_setting_allows_it(mailoutbox):
    assert email.send(notification(), timeout=5).ok
    [sent] = mailoutbox
    assert "Patient/pat-4711" in sent.subject + sent.body
    [(name, content, mimetype)] = sent.attachments
    assert (name, mimetype) == ("Patient-pat-4711.json", "application/fhir+json")
    assert fhirjson.loads(content) == PATIENT
    assert "receiver-secret" not in _everything(sent)


@override_settings(FHIR_SUBSCRIPTION_EMAIL_CONTENT=True)
def test_content_allowed_but_no_payload_names_the_resource_only(mailoutbox):
    assert email.send(notification(body=None, action="delete"), timeout=5).ok
    [sent] = mailoutbox
    assert "Patient/pat-4711" in sent.body and sent.attachments == []
    assert "Chalmers" not in _everything(sent)


@override_settings(FHIR_SUBSCRIPTION_EMAIL_CONTENT=True, FHIR_SUBSCRIPTION_MAX_PAYLOAD=300)
def test_payload_limit(mailoutbox):
    big = dict(PATIENT, text={"status": "generated", "div": "<div>" + "x" * 1000 + "</div>"})
    outcome = email.send(notification(body=fhirjson.dumps(big)), timeout=5)
    assert not outcome.ok and "FHIR_SUBSCRIPTION_MAX_PAYLOAD" in outcome.error
    assert mailoutbox == []


def test_an_smtp_server_that_is_down_or_silent_fails_quickly():
    started = time.monotonic()
    with override_settings(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=free_port(),
    ):
        outcome = email.send(notification(), timeout=0.5)
    assert not outcome.ok and "refused" in outcome.error.lower()
    with SilentReceiver() as silent:
        with override_settings(
            EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=silent.port,
        ):
            outcome = email.send(notification(), timeout=0.5)
    assert not outcome.ok and "timed out" in outcome.error
    assert time.monotonic() - started < 3
