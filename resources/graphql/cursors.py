"""`_cursor` values of GraphQL connections (https://hl7.org/fhir/R4/graphql.html#searching): the
search engine's own keyset cursor (resources/search/paging.py, which checks it belongs to the same
sort) with the offset of the page it opens, so a connection can say where it is. The offset is
only reported, never used to select rows: a cursor altered by a client can misstate its `offset`,
not reach other rows."""

from __future__ import annotations

import base64
import json

from graphql import GraphQLError


def encode(position: str | None, offset: int) -> str:
    raw = json.dumps({"c": position, "o": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> tuple[str | None, int]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        position, offset = raw["c"], raw["o"]
        if (position is None or isinstance(position, str)) and isinstance(offset, int) and offset >= 0:
            return position, offset
    except (ValueError, KeyError, TypeError):
        pass
    raise GraphQLError("_cursor is not a cursor this server gave", extensions={"status": 400})
