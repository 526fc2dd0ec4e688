"""The audit log: one append-only row per FHIR API request, hash-chained so that edits show.

Chains: every process keeps one chain for all its threads (services.py), identified by `chain`
and numbered by `seq` from 1; each row carries the hash of the previous row of its chain and its
own HMAC over its content under a key kept outside the database (settings.FHIR_AUDIT_KEY), so a
rewritten chain does not verify without the key. Appends are serialised by a lock held from a
row's insert until its transaction ends, so a rolled-back write leaves no hole. A restarted
process starts a new chain; `audit_verify` walks every chain.

Anchors: AuditCheckpoint rows record a chain's head (seq and hash) as it grows (the writer, with
its first row and then periodically; `audit_anchor`; `audit_verify`), so rows cut off the end of
a chain, or a whole chain, show. AuditAnchor rows record where a chain continues after
`audit_archive` moved its older rows to a file.

Append-only: the application never updates or deletes a row (the queryset refuses), and on
PostgreSQL a trigger refuses UPDATE and DELETE on every audit table (migration 0004) unless the
statement comes from the SECURITY DEFINER function `audit_archive_delete`, which only the
archiving command calls; the application should run as a role that does not own these tables
(docs/deployment.md).
"""

from __future__ import annotations

from django.db import models


class AppendOnly(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionError("The audit log is append-only")

    def delete(self):
        raise PermissionError("The audit log is append-only")


class AuditEntry(models.Model):
    SUCCESS, FAILURE, DENIED = "success", "failure", "denied"
    OUTCOMES = [(SUCCESS, "success"), (FAILURE, "failure"), (DENIED, "denied")]

    time = models.DateTimeField(db_index=True)
    request_id = models.CharField(max_length=200)
    chain = models.CharField(max_length=40)
    seq = models.BigIntegerField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    # Caller. Never a token or a secret: `credential` is a token id or label.
    role = models.CharField(max_length=64, blank=True)
    identity = models.CharField(max_length=100, blank=True)
    user = models.CharField(max_length=150, blank=True)
    client_id = models.CharField(max_length=200, blank=True)
    credential = models.CharField(max_length=300, blank=True)
    auth_method = models.CharField(max_length=20, blank=True)
    on_behalf_of = models.CharField(max_length=200, blank=True)
    # What was asked and what happened.
    http_method = models.CharField(max_length=10)
    path = models.CharField(max_length=1000)
    operation = models.CharField(max_length=30, blank=True)
    resource_type = models.CharField(max_length=64, blank=True)
    resource_id = models.CharField(max_length=64, blank=True)
    version = models.CharField(max_length=20, blank=True)
    query = models.TextField(blank=True)
    # Resources returned or written, compactly: "Observation/1@3 Patient/7@1 ...".
    results = models.TextField(blank=True)
    rule = models.CharField(max_length=100, blank=True)
    # The version of the rule set that decided (authz RuleSetVersion.version; 0: the built-in
    # default rules, no rule set loaded yet; null: no rule was consulted, e.g. a refused credential).
    rules_version = models.BigIntegerField(null=True, blank=True)
    filters = models.TextField(blank=True)
    outcome = models.CharField(max_length=10, choices=OUTCOMES)
    status = models.PositiveSmallIntegerField()
    reason = models.TextField(blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)

    objects = AppendOnly.as_manager()

    class Meta:
        verbose_name_plural = "audit entries"
        constraints = [models.UniqueConstraint(fields=["chain", "seq"], name="audit_chain_seq")]
        indexes = [
            models.Index(fields=["identity", "time"], name="audit_identity_time"),
            models.Index(fields=["resource_type", "resource_id"], name="audit_resource"),
        ]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.identity or self.role} {self.operation} {self.status}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not kwargs.get("force_insert"):
            raise PermissionError("The audit log is append-only")
        super().save(*args, **kwargs)


class AuditPatient(models.Model):
    """Which patients' data an entry touched (their compartments), for "who accessed this patient"."""

    entry = models.ForeignKey(
        AuditEntry, on_delete=models.DO_NOTHING, related_name="patients", db_constraint=False
    )
    patient_id = models.CharField(max_length=64)

    objects = AppendOnly.as_manager()

    class Meta:
        indexes = [models.Index(fields=["patient_id", "entry"], name="audit_patient_lookup")]

    def __str__(self) -> str:
        return f"Patient/{self.patient_id} in entry {self.entry_id}"


class AuditAnchor(models.Model):
    """Where a chain continues after `audit_archive` moved its older rows to a file."""

    chain = models.CharField(max_length=40)
    seq = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    archive = models.CharField(max_length=500)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain", "seq"], name="audit_anchor_chain_seq")]

    def __str__(self) -> str:
        return f"{self.chain} #{self.seq} -> {self.archive}"


class AuditCheckpoint(models.Model):
    """A chain's head as it was once: row `seq` of `chain` existed with hash `hash`.

    `audit_verify` requires every chain to reach its newest checkpoint with that very row, so that
    rows deleted from the end of a chain (or a whole chain) show. Written by the process that owns
    the chain (`source` "writer", in the transaction of the row it names), by `audit_anchor` and by
    `audit_verify` ("command")."""

    WRITER, COMMAND = "writer", "command"

    chain = models.CharField(max_length=40)
    seq = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    time = models.DateTimeField()
    source = models.CharField(max_length=10)

    objects = AppendOnly.as_manager()

    class Meta:
        indexes = [models.Index(fields=["chain", "seq"], name="audit_checkpoint_chain_seq")]

    def __str__(self) -> str:
        return f"{self.chain} reached #{self.seq} ({self.source}, {self.time:%Y-%m-%d %H:%M:%S})"
