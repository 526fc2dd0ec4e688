"""OperationOutcome construction: every refusal the API makes is built here.

https://hl7.org/fhir/R4/operationoutcome.html — issue codes come from
http://hl7.org/fhir/issue-type (value set IssueType, required binding).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue: `code` is an IssueType code, `expression` FHIRPath locations."""

    code: str
    diagnostics: str
    severity: str = "error"
    expression: tuple[str, ...] = ()

    def as_json(self) -> dict:
        out = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            out["expression"] = list(self.expression)
        return out


@dataclass
class FhirError(Exception):
    """An error that maps to an HTTP status and an OperationOutcome body."""

    status: int
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:  # pragma: no cover - debugging aid
        return f"{self.status}: " + "; ".join(i.diagnostics for i in self.issues)

    def outcome(self) -> dict:
        return operation_outcome(self.issues)


def operation_outcome(issues: list[Issue]) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [i.as_json() for i in issues]}


def error(status: int, code: str, diagnostics: str, *, expression: tuple[str, ...] = ()) -> FhirError:
    return FhirError(status, [Issue(code, diagnostics, expression=expression)])


def bad_request(diagnostics: str, *, code: str = "invalid", expression: tuple[str, ...] = ()) -> FhirError:
    return error(400, code, diagnostics, expression=expression)


def not_found(diagnostics: str) -> FhirError:
    return error(404, "not-found", diagnostics)


def gone(diagnostics: str) -> FhirError:
    return error(410, "deleted", diagnostics)


def precondition_failed(diagnostics: str) -> FhirError:
    return error(412, "conflict", diagnostics)


def information(diagnostics: str) -> dict:
    return operation_outcome([Issue("informational", diagnostics, severity="information")])
