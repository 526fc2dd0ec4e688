"""The Subscription resource as the server accepts it (https://hl7.org/fhir/R4/subscription.html).

Runs inside the write of every Subscription (a type hook, resources/hooks.py), so REST, transactions
and GraphQL accept and refuse alike:

- `criteria` is a search, `Type?param=value...`, compiled strictly as the subscriber's search (an
  unknown type or parameter, a result parameter such as `_include`, a parameter the subscriber's
  rules block: refused with 400/422 naming it); creating or changing one needs the `subscribe`
  operation on the criteria's type;
- `channel.type` is rest-hook, websocket, email or message (sms and anything else: 422), with an
  endpoint of the right form (subscriptions/endpoints.py) that the allow-list admits;
- `status`: the server accepts a subscription at once, so `requested` is stored as `active`; `off`
  and `error` (the server's, after the last retry; a client may also send it) deliver nothing until
  the client sends `requested` or `active` again;
- `channel.header` values may hold the receiver's secrets: they are kept server-side
  (SubscriptionState.headers) and the stored resource carries each header's name with a masked
  value; an update that sends a masked value back keeps the secret it stands for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl

from django.utils import timezone

from authz import rules
from authz.context import AccessContext
from resources import definitions, fhirdates
from resources.outcomes import FhirError, bad_request, error
from resources.search import access
from resources.search.criteria import build_criteria
from resources.search.params import RESULT_PARAMS

from . import endpoints

MASK = "****"
CHANNEL_TYPES = ("rest-hook", "websocket", "email", "message")
PAYLOADS = ("", "application/fhir+json", "application/json")
_HEADER = re.compile(r"^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\r\n]*)$")
# Headers the transport itself sets; a subscription may not override them.
_RESERVED = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "x-fhir-idempotency-key",
        "x-fhir-signature",
        "x-fhir-event-number",
    }
)


@dataclass(frozen=True)
class Parsed:
    status: str
    criteria: str
    criteria_type: str
    channel_type: str
    endpoint: str
    payload: str
    headers: list[str]  # in clear
    end: datetime | None


def _unprocessable(diagnostics: str, *expression: str) -> FhirError:
    return error(422, "processing", diagnostics, expression=tuple(expression))


def parse_criteria(ctx: AccessContext, criteria: object) -> tuple[str, list[tuple[str, str]]]:
    """The criteria's type and parameters, checked as the subscriber's search; raises when refused."""
    if not isinstance(criteria, str) or not criteria.strip():
        raise _unprocessable(
            "Subscription.criteria is required: a search such as 'Observation?code=...'",
            "Subscription.criteria",
        )
    text = criteria.strip()
    resource_type, _, query = text.partition("?")
    if resource_type not in definitions.resource_types():
        raise _unprocessable(
            f"Subscription.criteria names '{resource_type}', which is not a resource type",
            "Subscription.criteria",
        )
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True) if query else []
    except ValueError as exc:
        raise _unprocessable(
            f"Subscription.criteria '{text}' is not a valid search", "Subscription.criteria"
        ) from exc
    for name, _ in pairs:
        if name.split(":")[0] in RESULT_PARAMS:
            raise _unprocessable(
                f"Subscription.criteria may not use '{name}': a subscription matches resources, it does "
                "not shape a result",
                "Subscription.criteria",
            )
    rules.authorize(ctx, "subscribe", resource_type)
    if pairs:
        build_criteria(
            resource_type,
            pairs,
            strict=True,
            rows=access.reachable(ctx, "subscribe"),
            guard=access.guard(ctx, "subscribe"),
        )
    return resource_type, pairs


@dataclass(frozen=True)
class Kept:
    """The secrets a live subscription holds (its header values, its endpoint's password)."""

    endpoint: str
    headers: list[str]


def parse(ctx: AccessContext, body: dict, kept: Kept | None) -> Parsed:
    """Check a Subscription body (already valid R4) and return what the server keeps of it.
    `kept`: what the subscription held before this write (None: a new subscription, or one deleted);
    a masked value keeps its secret only while the endpoint's origin stays the same, so a secret is
    never sent anywhere but where its owner sent it."""
    status = body.get("status")
    criteria_type, _ = parse_criteria(ctx, body.get("criteria"))
    channel = body.get("channel") or {}
    channel_type = channel.get("type")
    if channel_type not in CHANNEL_TYPES:
        raise error(
            422,
            "not-supported",
            f"Subscription.channel.type '{channel_type}' is not supported; this server delivers "
            f"{', '.join(CHANNEL_TYPES)}",
            expression=("Subscription.channel.type",),
        )
    payload = channel.get("payload") or ""
    if payload not in PAYLOADS:
        raise error(
            422,
            "not-supported",
            f"Subscription.channel.payload '{payload}' is not supported; leave it out for notifications "
            "without content, or ask for application/fhir+json",
            expression=("Subscription.channel.payload",),
        )
    endpoint = _unmasked_endpoint(channel.get("endpoint") or "", kept)
    try:
        endpoints.check(channel_type, endpoint)
    except endpoints.EndpointRefused as exc:
        raise _unprocessable(str(exc), "Subscription.channel.endpoint") from exc
    same_origin = kept is not None and endpoints.origin(kept.endpoint) == endpoints.origin(endpoint)
    headers = _headers(channel.get("header") or [], kept.headers if same_origin else [])
    end = None
    if body.get("end"):
        end = _instant(body["end"])
    if status not in ("off", "error") and end is not None and end <= timezone.now():
        status = "off"  # ended already: R4 turns a subscription off at its end
    return Parsed(
        # Accepted at once: `requested` (and `active`) is active; `off` and `error` deliver nothing
        # until the client asks for the subscription again.
        status=status if status in ("off", "error") else "active",
        criteria=body["criteria"].strip(),
        criteria_type=criteria_type,
        channel_type=channel_type,
        endpoint=endpoint,
        payload=payload,
        headers=headers,
        end=end,
    )


def _instant(value: str) -> datetime:
    parsed = fhirdates.start_of(value)
    if parsed is None:
        raise bad_request(f"Subscription.end '{value}' is not an instant", expression=("Subscription.end",))
    return parsed


def _unmasked_endpoint(endpoint: str, kept: Kept | None) -> str:
    """The endpoint with its password: a masked one (`user:****@`) stands for the password the
    subscription holds for the same origin and user."""
    if endpoints.password(endpoint) != MASK:
        return endpoint
    if (
        kept is None
        or endpoints.origin(kept.endpoint) != endpoints.origin(endpoint)
        or (endpoints.username(kept.endpoint) != endpoints.username(endpoint))
    ):
        raise _unprocessable(
            "Subscription.channel.endpoint has a masked password, but there is none to keep for this "
            "host and user: give the password",
            "Subscription.channel.endpoint",
        )
    return kept.endpoint


def masked_endpoint(endpoint: str) -> str:
    """The endpoint as the stored resource shows it: its password masked."""
    return endpoints.with_password(endpoint, MASK) if endpoints.password(endpoint) else endpoint


_MAX_HEADERS = 20
_MAX_HEADER_LINE = 4096


def _headers(given: list, kept: list[str]) -> list[str]:
    if len(given) > _MAX_HEADERS:
        raise _unprocessable(
            f"Subscription.channel.header holds at most {_MAX_HEADERS} lines", "Subscription.channel.header"
        )
    previous = {}
    for line in kept:
        match = _HEADER.match(line)
        if match:
            previous[match.group(1).lower()] = line
    headers = []
    for index, line in enumerate(given):
        match = _HEADER.match(line) if isinstance(line, str) else None
        if match is None:
            raise bad_request(
                f"Subscription.channel.header[{index}] must be 'Name: value' on one line",
                expression=(f"Subscription.channel.header[{index}]",),
            )
        name, value = match.group(1), match.group(2)
        if len(line) > _MAX_HEADER_LINE or not (value.isascii() and value.isprintable()):
            raise bad_request(
                f"Subscription.channel.header[{index}] must be printable ASCII of at most "
                f"{_MAX_HEADER_LINE} characters (HTTP header values)",
                expression=(f"Subscription.channel.header[{index}]",),
            )
        if name.lower() in _RESERVED:
            raise _unprocessable(
                f"Subscription.channel.header may not set '{name}': the server sets it",
                f"Subscription.channel.header[{index}]",
            )
        if value == MASK:
            if name.lower() not in previous:
                raise _unprocessable(
                    f"Subscription.channel.header '{name}' is masked, but there is no value to keep for "
                    "this endpoint: give the value",
                    f"Subscription.channel.header[{index}]",
                )
            headers.append(previous[name.lower()])
        else:
            headers.append(f"{name}: {value}")
    return headers


def masked(headers: list[str]) -> list[str]:
    """The header lines as the stored resource shows them: names, never values."""
    return [f"{line.split(':', 1)[0]}: {MASK}" for line in headers]


def ended(parsed_end: datetime | None) -> bool:
    return parsed_end is not None and parsed_end <= timezone.now()
