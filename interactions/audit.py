"""The audit log as FHIR AuditEvents through the door: reading an entry of the server's log and the
AuditEvent search that merges the log with the AuditEvents clients store (audit/logsearch.py).
Each call is one interaction with its own audit row, like any read or search."""

from __future__ import annotations

from audit import logsearch
from audit.logsearch import LOG, MergedPage

__all__ = ["LOG", "MergedPage", "audit_read", "audit_search", "audit_vread"]
from authz.context import AccessContext

from .door import interaction


@interaction("read")
def audit_read(ctx: AccessContext, *, resource_type: str = "AuditEvent", fhir_id: str) -> dict:
    return logsearch.log_entry(ctx, fhir_id=fhir_id, operation="read")


@interaction("vread")
def audit_vread(ctx: AccessContext, *, resource_type: str = "AuditEvent", fhir_id: str, version: str) -> dict:
    return logsearch.log_entry(ctx, fhir_id=fhir_id, operation="vread", version=version)


@interaction("search")
def audit_search(
    ctx: AccessContext,
    *,
    resource_type: str = "AuditEvent",
    params: list[tuple[str, str]],
    count: int,
    mode: str | None,
    strict: bool,
    base: str,
) -> MergedPage:
    return logsearch.merged_page(ctx, params=params, count=count, mode=mode, strict=strict, base=base)
