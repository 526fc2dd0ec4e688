"""SMART App Launch scopes as a ceiling on what the access rules grant.

Implements the resource scopes of SMART App Launch "Scopes and Launch Context"
(https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html), both forms:

- v1 (section "Scopes for requesting clinical data", SMART 1.0): `patient/Observation.read`, `.write`, `.*`;
- v2 (section "SMART's scopes are used to delegate access", SMART 2.0): `patient/Observation.rs`, where the
  suffix is a non-empty subset of c r u d s in that order.

A scope never grants anything by itself: the rules (rules.py) decide, and the scopes can only take away.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from resources.definitions import resource_types

CONTEXTS = ("patient", "user", "system")
PERMISSIONS = "cruds"

# v1 suffixes, as the v2 permissions they stand for ("Scopes" section, v1 compatibility table).
_V1_SUFFIXES = {"read": frozenset("rs"), "write": frozenset("cud"), "*": frozenset(PERMISSIONS)}
# v2: an ordered, non-empty subset of c r u d s (`sr` or `rr` is not a scope).
_V2_SUFFIX = re.compile(r"^(?=[cruds])c?r?u?d?s?$")
# Anything that starts like a resource scope is one for the ceiling, even when malformed: a token that
# carries only `patient/Foo.read` gets an empty ceiling (nothing), never "no ceiling" (everything).
_RESOURCE_LIKE = re.compile(r"^(patient|user|system)/")
_RESOURCE_SCOPE = re.compile(r"^(patient|user|system)/([A-Za-z]+|\*)\.([a-z*]+)(\?.*)?$")
# v2 granular scopes: `patient/Observation.rs?category=laboratory` (one or more name=value pairs).
_GRANULAR_QUERY = re.compile(r"^\?[^=&?\s]+=[^&\s]*(&[^=&?\s]+=[^&\s]*)*$")

_VERBS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}

# The platform's rule operations (rules.OPERATIONS) and the SMART permissions each needs on its type.
_NEEDS: dict[str, frozenset[str]] = {
    "read": frozenset("r"),
    "vread": frozenset("r"),
    "graphql-read": frozenset("r"),
    "search": frozenset("s"),
    "history": frozenset("s"),
    "graphql-search": frozenset("s"),
    # $everything and bulk export read every resource they find: both searching and reading.
    "everything": frozenset("rs"),
    "bulk-export": frozenset("rs"),
    "create": frozenset("c"),
    "update": frozenset("u"),
    "patch": frozenset("u"),
    "delete": frozenset("d"),
    # Minting a token for an identity is acting as it: the holder must be allowed to update it.
    "generate-token": frozenset("u"),
    # Materialising a CarePlan's activities creates and updates its Tasks.
    "materialize": frozenset("cu"),
}

# Scopes advertised in the discovery documents (SMART conformance `scopes_supported`, OIDC discovery).
SUPPORTED_SCOPES: list[str] = [
    "openid",
    "fhirUser",
    "profile",
    "offline_access",
    "online_access",
    "launch/patient",
    "patient/*.rs",
    "patient/*.cruds",
    "user/*.rs",
    "user/*.cruds",
    "system/*.rs",
    "system/*.cruds",
    "patient/*.read",
    "user/*.read",
    "user/*.write",
    "system/*.read",
    "system/*.write",
]


@dataclass(frozen=True)
class Grant:
    """One well-formed resource scope: `context/resource_type.permissions`."""

    context: str  # patient | user | system
    resource_type: str  # an R4 resource type or "*"
    permissions: frozenset[str]  # a subset of "cruds"

    def as_text(self) -> str:
        ordered = "".join(p for p in PERMISSIONS if p in self.permissions)
        return f"{self.context}/{self.resource_type}.{ordered}"


@dataclass(frozen=True)
class ScopeSet:
    """The resource scopes of a credential, as a ceiling: `permits` says whether they allow an operation."""

    grants: frozenset[Grant] = frozenset()

    def permits(self, operation: str, resource_type: str, *, patient_context: bool) -> bool:
        """Whether the scopes allow `operation` on `resource_type` ("*" = every type).

        `patient/` scopes count only when `patient_context` is true (the caller is, or stands for, a
        Patient); `user/` and `system/` scopes always count. An unknown operation is refused.
        """
        grants = [g for g in self.grants if patient_context or g.context != "patient"]
        if operation == "transaction":
            # The bundle itself needs some scope; each entry is then authorised on its own.
            return any(g.permissions for g in grants)
        if operation == "subscribe":
            # A subscription is created as a Subscription resource, whatever it watches.
            return "c" in _permissions_on(grants, "Subscription")
        needed = _NEEDS.get(operation)
        return needed is not None and needed <= _permissions_on(grants, resource_type)

    def permitted_types(self, operation: str, *, patient_context: bool) -> frozenset[str] | None:
        """The types on which the scopes allow `operation`; None when a `*` grant allows it on every type.
        Searches narrow what they return (included resources too) to these types."""
        grants = [g for g in self.grants if patient_context or g.context != "patient"]
        needed = _NEEDS.get(operation)
        if needed is None:
            return frozenset()
        if needed <= _permissions_on(grants, "*"):
            return None
        named = {g.resource_type for g in grants if g.resource_type != "*"}
        return frozenset(t for t in named if needed <= _permissions_on(grants, t))

    def as_text(self) -> str:
        """The scopes in canonical v2 form, sorted, for logs ("" when they grant nothing)."""
        return " ".join(sorted(g.as_text() for g in self.grants))


def _permissions_on(grants: list[Grant], resource_type: str) -> frozenset[str]:
    """Union of the permissions on `resource_type`; a `*` grant covers every type, and only a `*`
    grant covers the system-wide "*" (a search over all types)."""
    found: set[str] = set()
    for grant in grants:
        if grant.resource_type in ("*", resource_type):
            found |= grant.permissions
    return frozenset(found)


def is_resource_scope(scope: str) -> bool:
    """Whether `scope` is a syntactically valid SMART resource scope (v1, v2, or v2 granular)."""
    match = _RESOURCE_SCOPE.match(scope)
    if match is None:
        return False
    _context, resource_type, suffix, query = match.groups()
    if query is not None and (suffix in _V1_SUFFIXES or not _GRANULAR_QUERY.match(query)):
        return False  # granular queries exist only in v2
    return _valid_type(resource_type) and _suffix_permissions(suffix) is not None


def parse_scope(scope: str) -> Grant | None:
    """The grant of one scope, or None when it grants nothing (not a resource scope, malformed, granular)."""
    match = _RESOURCE_SCOPE.match(scope)
    if match is None:
        return None
    context, resource_type, suffix, query = match.groups()
    if query is not None:
        # v2 granular scopes (`patient/Observation.rs?category=laboratory`) narrow a grant to the
        # resources matching a search. Until that search is enforced on every read and write, granting
        # the unnarrowed permissions would exceed what was consented to: they grant nothing.
        return None
    permissions = _suffix_permissions(suffix)
    if permissions is None or not _valid_type(resource_type):
        return None
    return Grant(context, resource_type, permissions)


def parse_scopes(scope: str) -> ScopeSet | None:
    """The ceiling set by a space-separated scope string; None when it holds no resource scope at all
    (e.g. "openid profile": no ceiling). Malformed or granular resource scopes count but grant nothing."""
    words = scope.split()
    if not any(_RESOURCE_LIKE.match(word) for word in words):
        return None
    grants = (parse_scope(word) for word in words)
    return ScopeSet(frozenset(g for g in grants if g is not None))


def describe(scope: str) -> str | None:
    """A human description of a resource scope for the consent page, or None when it is not valid."""
    if not is_resource_scope(scope):
        return None
    match = _RESOURCE_SCOPE.match(scope)
    assert match is not None
    context, resource_type, suffix, query = match.groups()
    verbs = [_VERBS[p] for p in PERMISSIONS if p in (_suffix_permissions(suffix) or ())]
    what = "resources of any type" if resource_type == "*" else f"{resource_type} resources"
    whose = {
        "patient": "of the current patient",
        "user": "the user may access",
        "system": "the client may access",
    }[context]
    text = f"{', '.join(verbs).capitalize()} {what} {whose}"
    return f"{text} (limited to {query[1:]}; not yet supported, grants nothing)" if query else text


def _suffix_permissions(suffix: str) -> frozenset[str] | None:
    if suffix in _V1_SUFFIXES:
        return _V1_SUFFIXES[suffix]
    if _V2_SUFFIX.match(suffix):
        return frozenset(suffix)
    return None


def _valid_type(resource_type: str) -> bool:
    return resource_type == "*" or resource_type in resource_types()
