"""What subscriptions keep beside the Subscription resources: the outbox, each subscription's
delivery state, and every delivery with its attempts.

- `Event` is the transactional outbox: one row per committed create, update or delete, written in
  the write's own transaction (resources/hooks.py), so an event exists exactly when its change does.
  It holds ids, not content: the version it names is immutable in ResourceVersion.
- `SubscriptionState` is the server's side of one Subscription resource: the parsed criteria and
  channel, the receiver's header values in clear (the resource shows them masked), the subscriber
  (who created it, decided again at every delivery), the status and the event counter.
- `Delivery` is one notification owed to one subscription for one event (unique per pair, so a
  dispatcher that runs twice owes it once), with a stable idempotency key; `Attempt` is one try.
"""

from __future__ import annotations

from django.db import models


class Event(models.Model):
    action = models.CharField(max_length=8)  # create, update, delete
    resource_type = models.CharField(max_length=64)
    fhir_id = models.CharField(max_length=64)
    version = models.PositiveIntegerField()
    resource_pk = models.BigIntegerField()
    created = models.DateTimeField(auto_now_add=True)
    dispatched = models.BooleanField(default=False)

    class Meta:
        indexes = [
            models.Index(fields=["id"], name="event_pending", condition=models.Q(dispatched=False)),
            models.Index(fields=["created"], name="event_created"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.resource_type}/{self.fhir_id}/_history/{self.version}"


class SubscriptionState(models.Model):
    ACTIVE, OFF, ERROR, REQUESTED, DELETED = "active", "off", "error", "requested", "deleted"

    resource_pk = models.BigIntegerField(unique=True)
    fhir_id = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=12, default=ACTIVE)
    error = models.TextField(blank=True, default="")
    criteria = models.TextField()
    criteria_type = models.CharField(max_length=64)
    channel_type = models.CharField(max_length=16)
    endpoint = models.TextField(blank=True, default="")
    payload = models.CharField(max_length=100, blank=True, default="")
    # The receiver's header values as the client gave them ("Name: value"); never shown back.
    headers = models.JSONField(default=list, blank=True)
    end = models.DateTimeField(null=True, blank=True)
    # The subscriber: who created the subscription, decided again at every delivery.
    subscriber_role = models.CharField(max_length=100)
    subscriber_identity = models.CharField(max_length=200, blank=True, default="")
    credential_kind = models.CharField(max_length=16)  # api-token, oauth-user, oauth-client, jwt, system
    credential_ref = models.CharField(max_length=300, blank=True, default="")
    subscriber_scopes = models.TextField(blank=True, default="")
    events_since_start = models.BigIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["criteria_type", "status"], name="subscription_type_status")]

    def __str__(self) -> str:
        return f"Subscription/{self.fhir_id} ({self.channel_type}, {self.status})"

    @property
    def subscriber(self) -> str:
        return self.subscriber_identity or f"{self.credential_kind}:{self.credential_ref}"


class Delivery(models.Model):
    PENDING, SENDING, DELIVERED, WITHHELD, DEAD = "pending", "sending", "delivered", "withheld", "dead"

    subscription = models.ForeignKey(SubscriptionState, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.BigIntegerField()
    action = models.CharField(max_length=8)
    resource_type = models.CharField(max_length=64)
    fhir_id = models.CharField(max_length=64)
    version = models.PositiveIntegerField()
    resource_pk = models.BigIntegerField()
    # This subscription's event number (eventsSinceSubscriptionStart), given when the notification is
    # first allowed to leave: a withheld event takes no number, so gaps cannot reveal it.
    number = models.BigIntegerField(null=True, blank=True)
    key = models.CharField(max_length=64, unique=True)  # idempotency key, the same on every attempt
    state = models.CharField(max_length=10, default=PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt = models.DateTimeField()
    last_error = models.TextField(blank=True, default="")
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subscription", "event_id"], name="delivery_once_per_event")
        ]
        indexes = [
            models.Index(
                fields=["next_attempt"],
                name="delivery_due",
                condition=models.Q(state__in=["pending", "sending"]),
            ),
            models.Index(fields=["subscription", "number"], name="delivery_number"),
        ]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"#{self.number or '-'} {self.action} {self.resource_type}/{self.fhir_id} ({self.state})"


class Attempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_set")
    at = models.DateTimeField(auto_now_add=True)
    ok = models.BooleanField()
    status_code = models.IntegerField(null=True, blank=True)
    latency_ms = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["delivery", "at"], name="attempt_delivery_at")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {'ok' if self.ok else 'failed'} {self.status_code or ''}".strip()
