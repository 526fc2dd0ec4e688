"""SMART resource scopes as a ceiling (authz/smart.py): parsing v1 and v2 forms and `permits`.

https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html
"""

from __future__ import annotations

import pytest

from authz.rules import OPERATIONS
from authz.smart import SUPPORTED_SCOPES, Grant, ScopeSet, describe, is_resource_scope, parse_scopes

ALL_OPERATIONS = [op for op in OPERATIONS if op not in ("transaction", "subscribe")]


@pytest.mark.parametrize(
    "scope",
    ["", "openid profile", "openid fhirUser offline_access launch/patient launch", "read write", "Patient/x"],
)
def test_no_resource_scope_means_no_ceiling(scope: str) -> None:
    assert parse_scopes(scope) is None


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        # v1
        ("patient/Observation.read", {Grant("patient", "Observation", frozenset("rs"))}),
        ("user/Patient.write", {Grant("user", "Patient", frozenset("cud"))}),
        ("system/*.*", {Grant("system", "*", frozenset("cruds"))}),
        # v2
        ("patient/Observation.rs", {Grant("patient", "Observation", frozenset("rs"))}),
        ("user/*.cruds", {Grant("user", "*", frozenset("cruds"))}),
        ("system/Encounter.c", {Grant("system", "Encounter", frozenset("c"))}),
        ("user/Patient.ud", {Grant("user", "Patient", frozenset("ud"))}),
        # Mixed with OIDC and launch scopes, which are not resource scopes.
        (
            "openid fhirUser launch/patient patient/Observation.rs user/Patient.read",
            {Grant("patient", "Observation", frozenset("rs")), Grant("user", "Patient", frozenset("rs"))},
        ),
    ],
)
def test_parse(scope: str, expected: set[Grant]) -> None:
    parsed = parse_scopes(scope)
    assert parsed is not None
    assert parsed.grants == frozenset(expected)


@pytest.mark.parametrize(
    "scope",
    [
        "patient/Foo.read",  # not an R4 resource type
        "patient/observation.rs",  # types are case-sensitive
        "patient/Observation.sr",  # v2 permissions are ordered
        "patient/Observation.rr",
        "patient/Observation.x",
        "patient/Observation.",
        "patient/Observation",
        "patient/.rs",
        "practitioner/Observation.rs",  # not a context (and not resource-like: see below)
        "patient/Observation.rs?category=laboratory",  # granular: grants nothing for now
        "patient/Observation.read?category=laboratory",
        "user/*.cruds?",
    ],
)
def test_malformed_and_granular_scopes_grant_nothing(scope: str) -> None:
    parsed = parse_scopes(f"openid {scope}")
    if parsed is None:  # not resource-like at all: no ceiling, but still no grant
        assert not scope.startswith(("patient/", "user/", "system/"))
        return
    assert parsed.grants == frozenset()
    for op in OPERATIONS:
        assert not parsed.permits(op, "Observation", patient_context=True)


def test_malformed_scopes_beside_good_ones_are_ignored() -> None:
    parsed = parse_scopes("patient/Foo.read patient/Observation.rs?code=1234 user/Patient.rs")
    assert parsed == ScopeSet(frozenset({Grant("user", "Patient", frozenset("rs"))}))


@pytest.mark.parametrize(
    ("scope", "operation", "resource_type", "patient_context", "allowed"),
    [
        # patient/Observation.rs: reads and searches only.
        ("patient/Observation.rs", "read", "Observation", True, True),
        ("patient/Observation.rs", "vread", "Observation", True, True),
        ("patient/Observation.rs", "search", "Observation", True, True),
        ("patient/Observation.rs", "history", "Observation", True, True),
        ("patient/Observation.rs", "graphql-read", "Observation", True, True),
        ("patient/Observation.rs", "graphql-search", "Observation", True, True),
        ("patient/Observation.rs", "create", "Observation", True, False),
        ("patient/Observation.rs", "update", "Observation", True, False),
        ("patient/Observation.rs", "patch", "Observation", True, False),
        ("patient/Observation.rs", "delete", "Observation", True, False),
        ("patient/Observation.rs", "read", "Condition", True, False),
        ("patient/Observation.rs", "search", "*", True, False),  # a system-wide search needs a `*` type
        # patient/ scopes count only in a patient context.
        ("patient/Observation.rs", "read", "Observation", False, False),
        ("patient/*.cruds", "read", "Observation", False, False),
        ("patient/*.cruds", "transaction", "*", False, False),
        # read only or search only
        ("user/Observation.r", "read", "Observation", False, True),
        ("user/Observation.r", "search", "Observation", False, False),
        ("user/Observation.s", "search", "Observation", False, True),
        ("user/Observation.s", "read", "Observation", False, False),
        # $everything and bulk export need both r and s
        ("user/*.s", "everything", "Patient", False, False),
        ("user/*.r", "everything", "Patient", False, False),
        ("user/*.rs", "everything", "Patient", False, True),
        ("system/*.rs", "bulk-export", "*", False, True),
        ("system/*.s", "bulk-export", "*", False, False),
        # v1 forms
        ("patient/Observation.read", "search", "Observation", True, True),
        ("patient/Observation.read", "create", "Observation", True, False),
        ("user/Observation.write", "create", "Observation", False, True),
        ("user/Observation.write", "update", "Observation", False, True),
        ("user/Observation.write", "delete", "Observation", False, True),
        ("user/Observation.write", "read", "Observation", False, False),
        ("user/Observation.*", "read", "Observation", False, True),
        # subscribe needs c on Subscription
        ("user/Subscription.c", "subscribe", "Subscription", False, True),
        ("user/Subscription.rs", "subscribe", "Subscription", False, False),
        ("user/Observation.cruds", "subscribe", "Subscription", False, False),
        # generate-token needs u on the identity type
        ("user/Patient.u", "generate-token", "Patient", False, True),
        ("user/Patient.rs", "generate-token", "Patient", False, False),
        ("user/Practitioner.cruds", "generate-token", "Patient", False, False),
        # transaction: any scope lets the bundle in; its entries are checked one by one
        ("user/Observation.r", "transaction", "*", False, True),
        ("patient/Observation.r", "transaction", "*", True, True),
        # unknown operations are refused
        ("user/*.cruds", "teleport", "Patient", False, False),
        # wildcard types
        ("system/*.cruds", "delete", "Observation", False, True),
        ("system/*.cruds", "search", "*", False, True),
        ("user/*.rs", "read", "Patient", False, True),
        ("user/*.rs", "update", "Patient", False, False),
    ],
)
def test_permits(
    scope: str, operation: str, resource_type: str, patient_context: bool, allowed: bool
) -> None:
    parsed = parse_scopes(scope)
    assert parsed is not None
    assert parsed.permits(operation, resource_type, patient_context=patient_context) is allowed


@pytest.mark.parametrize("scope", ["user/*.cruds", "user/*.*", "system/*.cruds", "user/*.read user/*.write"])
@pytest.mark.parametrize("patient_context", [True, False])
def test_full_scopes_permit_everything(scope: str, patient_context: bool) -> None:
    parsed = parse_scopes(scope)
    assert parsed is not None
    for op in OPERATIONS:
        for resource_type in ("Patient", "Observation", "Subscription", "*"):
            assert parsed.permits(op, resource_type, patient_context=patient_context), (op, resource_type)


def test_patient_scopes_count_in_patient_context() -> None:
    parsed = parse_scopes("patient/*.cruds")
    assert parsed is not None
    for op in ALL_OPERATIONS:
        assert parsed.permits(op, "Observation", patient_context=True)
        assert not parsed.permits(op, "Observation", patient_context=False)


def test_empty_ceiling_permits_nothing() -> None:
    parsed = parse_scopes("patient/Nope.read")
    assert parsed == ScopeSet()
    for op in OPERATIONS:
        assert not parsed.permits(op, "*", patient_context=True)


def test_scopes_union() -> None:
    parsed = parse_scopes("user/Observation.r user/Observation.s user/*.c")
    assert parsed is not None
    assert parsed.permits("read", "Observation", patient_context=False)
    assert parsed.permits("search", "Observation", patient_context=False)
    assert parsed.permits("create", "Condition", patient_context=False)
    assert not parsed.permits("search", "Condition", patient_context=False)


def test_as_text_is_canonical_and_sorted() -> None:
    parsed = parse_scopes("user/Patient.write patient/Observation.read openid system/*.*")
    assert parsed is not None
    assert parsed.as_text() == "patient/Observation.rs system/*.cruds user/Patient.cud"
    assert ScopeSet().as_text() == ""


def test_scope_set_is_hashable_and_comparable() -> None:
    assert parse_scopes("user/*.rs") == parse_scopes("user/*.read")
    assert hash(parse_scopes("user/*.rs")) == hash(parse_scopes("user/*.read"))


@pytest.mark.parametrize(
    ("scope", "valid"),
    [
        ("patient/Observation.rs", True),
        ("user/*.cruds", True),
        ("system/Patient.read", True),
        ("user/*.*", True),
        ("patient/Observation.rs?category=laboratory", True),  # valid, though it grants nothing
        ("patient/Observation.rs?category=http://x.org/cs|laboratory&status=final", True),
        ("patient/Observation.rs?", False),
        ("patient/Observation.rs?category", False),
        ("patient/Observation.read?category=laboratory", False),  # no granular v1 scopes
        ("patient/Foo.rs", False),
        ("patient/Observation.sr", False),
        ("foo/bar", False),
        ("openid", False),
        ("launch/patient", False),
    ],
)
def test_is_resource_scope(scope: str, valid: bool) -> None:
    assert is_resource_scope(scope) is valid


def test_describe() -> None:
    assert describe("patient/Observation.rs") == "Read, search Observation resources of the current patient"
    assert describe("user/*.write") == "Create, update, delete resources of any type the user may access"
    assert "grants nothing" in (describe("patient/Observation.rs?code=x") or "")
    assert describe("foo/bar") is None


def test_supported_scopes_are_valid() -> None:
    resource_scopes = [s for s in SUPPORTED_SCOPES if "/" in s and not s.startswith("launch/")]
    assert resource_scopes
    assert all(is_resource_scope(s) for s in resource_scopes)
