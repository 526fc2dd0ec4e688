"""Keyset paging cursors for search results (https://hl7.org/fhir/R4/http.html#paging,
https://hl7.org/fhir/R4/search.html#count).

The spec leaves the form of paging links to the server. Offsets shift when rows are inserted or
deleted between two page fetches, so a page link here carries the sort key of the row it continues
from (the sort values and the primary key, which breaks every tie) and the next page is "the rows
after that key": a row inserted meanwhile lands on exactly one side of the key and no row is seen
twice or skipped.

A cursor is opaque to clients: JSON, base64url-encoded and signed with the server's secret (so it is
URL-safe and a tampered or truncated cursor is refused with 400 rather than decoded into values of
the wrong type). It also names the sort it was made for: a cursor presented with another `_sort`
is refused, since its key values would be compared with the wrong columns.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.core import signing

from ..outcomes import bad_request

_SIGNER = signing.Signer(salt="resources.search.paging", sep=".")
# Longer than any cursor this module writes (a few sort keys of at most 512 characters each).
MAX_CURSOR_LENGTH = 8192

FORWARD = "n"
BACKWARD = "p"

# How each kind of sort value travels through JSON.
KIND_TEXT = "text"
KIND_INSTANT = "instant"
KIND_DECIMAL = "decimal"


@dataclass(frozen=True)
class Cursor:
    """A position between two rows: `direction` says which side of (`values`, `pk`) the page lies."""

    direction: str
    values: tuple
    pk: int


def sort_signature(parts: list[str]) -> str:
    """A short digest of the sort a cursor belongs to."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:12]


def encode(cursor: Cursor, *, signature: str, kinds: list[str]) -> str:
    values = [_dump(value, kind) for value, kind in zip(cursor.values, kinds, strict=True)]
    payload = json.dumps([cursor.direction, signature, values, cursor.pk], separators=(",", ":"))
    text = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
    return _SIGNER.sign(text)


def decode(text: str, *, signature: str, kinds: list[str]) -> Cursor:
    """The cursor in `text`; FhirError(400) when it was not written by this server for this sort."""
    if len(text) > MAX_CURSOR_LENGTH:
        raise _invalid(text)
    try:
        payload = _SIGNER.unsign(text)
    except signing.BadSignature as exc:
        raise _invalid(text) from exc
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        direction, made_for, values, pk = json.loads(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise _invalid(text) from exc
    if made_for != signature:
        raise bad_request(
            "This paging cursor belongs to a search with another _sort; start again from the first page",
            expression=("_page",),
        )
    if direction not in (FORWARD, BACKWARD) or not isinstance(pk, int) or len(values) != len(kinds):
        raise _invalid(text)
    try:
        decoded = tuple(_load(value, kind) for value, kind in zip(values, kinds, strict=True))
    except (ValueError, TypeError, InvalidOperation) as exc:
        raise _invalid(text) from exc
    return Cursor(direction, decoded, pk)


def _dump(value: object, kind: str) -> object:
    if value is None:
        return None
    if kind == KIND_INSTANT:
        return value.isoformat()
    if kind == KIND_DECIMAL:
        return str(value)
    return value


def _load(value: object, kind: str) -> object:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(value)
    if kind == KIND_INSTANT:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError(value)
        return moment
    if kind == KIND_DECIMAL:
        return Decimal(value)
    return value


def _invalid(text: str):
    shown = text if len(text) <= 60 else text[:57] + "..."
    return bad_request(
        f"Invalid paging cursor '{shown}': use the links of a previous search page", expression=("_page",)
    )
