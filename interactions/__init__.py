"""The interaction layer: the one door every transport goes through.

One function per FHIR interaction (read.py, search.py, write.py, bundle.py, tokens.py, bind.py,
graphql.py), each
declaring its operation with `@interaction` (door.py), taking the caller's `AccessContext` and plain
arguments, and owning the transaction, the access decision (through the services and selectors,
which ask the rule chain), the shaping of what it returns (property filters; a write answers like a
read of its result) and the audit row. REST (resources/api/) is a thin adapter over it: parse, call
one function, render; GraphQL, WebSocket consumers, Celery tasks and the console call the same
functions and inherit the same decisions, filters and audit.

A context is per call: the audit notes and the memoised lookups live on it, so a long-lived worker
builds a fresh one (authz.authentication.authenticate_bearer, or AccessContext.system) per call.
"""
