"""GraphQL error entries (https://spec.graphql.org/October2021/#sec-Errors) for what the FHIR
server refuses (https://hl7.org/fhir/R4/graphql.html): a refusal of the door (FhirError) keeps its
message, HTTP status and issue code in `extensions`; a request over a limit of resources/limits.py
(the statement timeout) is a `too-costly` entry; anything else is logged and told as an internal
error, never with its text (no traceback, SQL or rule name leaves).
"""

from __future__ import annotations

import logging

from graphql import GraphQLError

from .. import limits
from ..outcomes import FhirError

log = logging.getLogger(__name__)


def from_fhir(refusal: FhirError) -> GraphQLError:
    return GraphQLError(_message(refusal), original_error=refusal, extensions=_extensions(refusal))


def _message(refusal: FhirError) -> str:
    return "; ".join(issue.diagnostics for issue in refusal.issues) or f"Refused ({refusal.status})"


def _extensions(refusal: FhirError) -> dict:
    code = refusal.issues[0].code if refusal.issues else "exception"
    return {"status": refusal.status, "code": code}


def entry(error: GraphQLError) -> dict:
    """The JSON error entry of one error of the execution (or of parsing and validation)."""
    original = error.original_error
    message, extensions = error.message, dict(error.extensions or {})
    if isinstance(original, FhirError):
        message, extensions = _message(original), _extensions(original)
    elif original is not None and not isinstance(original, GraphQLError):
        limited = limits.refusal(original)
        if limited is not None:
            message, extensions = _message(limited), _extensions(limited)
        else:
            log.error("Unhandled error in a GraphQL resolver", exc_info=original)
            message, extensions = "Internal server error", {"status": 500, "code": "exception"}
    out: dict = {"message": message}
    if error.locations:
        out["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.path:
        out["path"] = list(error.path)
    if extensions:
        out["extensions"] = extensions
    return out


def status_of(error: GraphQLError) -> int:
    """The HTTP status an error stands for (400 for the GraphQL layer's own)."""
    original = error.original_error
    if isinstance(original, FhirError):
        return original.status
    if original is not None and not isinstance(original, GraphQLError):
        limited = limits.refusal(original)
        return limited.status if limited is not None else 500
    return int((error.extensions or {}).get("status", 400))
