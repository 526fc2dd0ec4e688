"""The door every interaction goes through: one wrapper that owns the transaction of a write, the
audit row and the mapping of a failure to its audit outcome, whatever the transport.

An interaction function is declared with `@interaction("read")` (the operation is named where the
interaction is defined, never guessed from a URL) and takes the caller's `AccessContext` and plain
keyword arguments. The wrapper:

- for a write, runs the function and the audit row in one database transaction, so a write and its
  row commit together; a write that fails leaves a "failure" row (written after the rollback);
- for a read, writes the row after the answer is computed and before it is returned, so nothing
  leaves unaudited; if the row cannot be written the interaction fails (500), never answers;
- records exactly one row per call, with the declared operation, the rules the data layer noted and
  the resources it returned or wrote (audit/services.py).

Calls that fail before they reach an interaction (a malformed body, a bad credential, a method the
route does not serve) are recorded by `record_outside`, which the adapters call, so every request
still leaves one row.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction

from audit import services as audit
from authz.context import AccessContext
from resources import limits
from resources.outcomes import FhirError, Issue

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
_REACHED = ("door",)


def interaction(operation: str, *, writes: bool = False, status: Callable[[Any], int] | None = None):
    """Declare an interaction: `operation` is what the audit log records and what the function asks
    the rules for; `writes` makes it own a transaction; `status(result)` gives the status recorded
    for a success (200 unless the result says otherwise)."""

    def wrap(function: F) -> F:
        @functools.wraps(function)
        def run(ctx: AccessContext, /, **kwargs: Any) -> Any:
            if ctx.cache.get(_REACHED) is not None:
                # An interaction inside another (a transaction entry, a batch's search): the outer one
                # owns the transaction and the row.
                return function(ctx, **kwargs)
            ctx.cache[_REACHED] = operation
            target = (kwargs.get("resource_type") or "", kwargs.get("fhir_id") or "")
            if not settings.FHIR_AUDIT:
                if writes:
                    with transaction.atomic():
                        return function(ctx, **kwargs)
                return function(ctx, **kwargs)
            if writes:
                return _write(ctx, operation, target, function, kwargs, status)
            return _read(ctx, operation, target, function, kwargs, status)

        run.operation = operation  # type: ignore[attr-defined]
        return run  # type: ignore[return-value]

    return wrap


def _write(ctx, operation, target, function, kwargs, status):
    try:
        with transaction.atomic():
            result = function(ctx, **kwargs)
            _record(ctx, operation, target, status(result) if status else 200)
    except BaseException as exc:
        audit.undo_last()
        _refuse(ctx, operation, target, exc)
    audit.settle()
    return result


def _read(ctx, operation, target, function, kwargs, status):
    try:
        result = function(ctx, **kwargs)
    except BaseException as exc:
        _refuse(ctx, operation, target, exc)
    try:
        _record(ctx, operation, target, status(result) if status else 200)
    except Exception as exc:
        log.exception("Could not write the audit row of %s (%s)", operation, ctx.request_id)
        raise FhirError(500, [Issue("exception", "The request could not be audited")]) from exc
    audit.settle()
    return result


def _record(
    ctx: AccessContext, operation: str, target: tuple[str, str], status: int, reason: str = ""
) -> None:
    origin = ctx.origin
    outcome = "success" if status < 400 else "denied" if status in (401, 403) else "failure"
    audit.record(
        ctx,
        http_method=origin.method or origin.transport,
        path=origin.path,
        operation=operation,
        resource_type=target[0],
        resource_id=target[1],
        query=origin.query,
        outcome=outcome,
        status=status,
        reason=reason,
        client_ip=origin.client_ip,
        user_agent=origin.user_agent,
    )


def _refuse(ctx: AccessContext, operation: str, target: tuple[str, str], exc: BaseException) -> None:
    """Record a failed interaction and raise what the caller is told: a request over a limit
    (resources/limits.py: the statement timeout) is a too-costly refusal, recorded as such."""
    limited = limits.refusal(exc) if not isinstance(exc, FhirError) else None
    if limited is not None:
        _record_failure(ctx, operation, target, limited)
        raise limited from exc
    _record_failure(ctx, operation, target, exc)
    raise exc


def _record_failure(ctx: AccessContext, operation: str, target: tuple[str, str], exc: BaseException) -> None:
    """The row of an interaction that failed; if it cannot be written the failure becomes a 500."""
    if isinstance(exc, FhirError):
        # A refusal's text does not name the rule; its `reason`, when it has one, does (audit only).
        status = exc.status
        reason = getattr(exc, "reason", "") or (exc.issues[0].diagnostics if exc.issues else "")
    else:
        status, reason = 500, "Internal server error"
    try:
        _record(ctx, operation, target, status, reason)
        audit.settle()
    except Exception as failure:
        log.exception("Could not write the audit row of a failed %s (%s)", operation, ctx.request_id)
        raise FhirError(500, [Issue("exception", "The request could not be audited")]) from failure


def reached(ctx: AccessContext) -> bool:
    """Whether this call went through an interaction (which then wrote its row)."""
    return ctx.cache.get(_REACHED) is not None


def record_outside(
    ctx: AccessContext, operation: str, target: tuple[str, str], status: int, reason: str = ""
) -> None:
    """The row of a call refused before it reached an interaction (bad input, bad credential, a
    method the route does not serve). Raises when the row cannot be written."""
    if not settings.FHIR_AUDIT or reached(ctx):
        return
    ctx.cache[_REACHED] = operation
    _record(ctx, operation, target, status, reason)
    audit.settle()
