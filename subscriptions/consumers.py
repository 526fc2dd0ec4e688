"""The WebSocket endpoint of R4 Subscriptions, `[base]/websocket`
(https://hl7.org/fhir/R4/subscription.html#2.46.7.2): an adapter over the door (interactions/bind.py).

The protocol, as docs/subscriptions.md ("WebSocket") documents it for clients:

- `bind <id>`: answered `bound <id>`; then `ping <id>` on every notification of that subscription
  (the R4 protocol, unchanged). Several subscriptions may be bound on one socket.
- `bind <id> <number>`: the same, and first one `ping <id> <n>` for every notification delivered
  after event number `<number>` (oldest first, at most FHIR_WEBSOCKET_REPLAY_LIMIT), closed by
  `replayed <id> <last>` (`replayed <id> <last> more` when the limit cut it short: bind again from
  `<last>`); live pings of that binding then carry their number too, so the client always knows
  its cursor. Only clients that send a cursor see numbers: a plain R4 client never does.
- `bind-with-token <token>` (R5's message, for browsers, which cannot set headers on a WebSocket):
  authenticates the socket with `<token>`, any bearer credential the REST API accepts (a one-time
  API token suits a browser best: it is spent by this message). Answered `authenticated`.
- `unbind <id>`: answered `unbound <id>`; the socket stops receiving pings for it.
- Anything refused is answered `error ...` with the words of the refusal. A bind to a Subscription
  the caller may not read is answered exactly like a bind to one that does not exist.

Authentication is the handshake's `Authorization: Bearer ...` header (a bad one refuses the
handshake) or `bind-with-token`, once per socket; every bind is decided by the caller's rules as
they are at that moment, and audited as a read of that Subscription. A binding is decided again
before a ping when FHIR_WEBSOCKET_RECHECK_SECONDS have passed since its last decision: a credential
revoked or expired (or whose identity was deleted) since closes the socket (`error credential ...`,
code 4401); a Subscription no longer readable is unbound (`error <id> no such subscription`). Heartbeats are WebSocket ping
frames sent by the server (daphne and runserver every 20 s of silence), never text messages that
an R4 client would not understand.

Database work runs through `database_sync_to_async`. Messages of one socket are handled one at a
time (Channels awaits each handler), so live pings that arrive while a bind replays wait in the
socket's queue and are sent after it; those the replay already sent are not sent twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
import uuid
from dataclasses import dataclass, field

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from authz.authentication import authenticate_bearer
from authz.context import AccessContext, Origin
from interactions import door
from interactions.bind import bind, caller_alive, caller_of
from resources.outcomes import FhirError

from .channels import websocket

log = logging.getLogger(__name__)

_ID = re.compile(r"^[A-Za-z0-9.-]{1,64}$")
_MAX_MESSAGE = 16 * 1024  # a bind-with-token carries a JWT at most
# Closing codes of the application range (RFC 6455 7.4.2): 4401 after a refused credential.
CLOSE_UNAUTHORIZED = 4401
NOT_FOUND = "error {id} no such subscription"
_USAGE = "error expected 'bind <id>', 'bind <id> <event number>', 'bind-with-token <token>' or 'unbind <id>'"


class _CredentialGone(Exception):
    """The socket's credential was revoked or expired, or its identity deleted, since it was shown."""


@dataclass
class _Bound:
    numbered: bool  # the client gave a cursor: its pings carry event numbers
    replayed: set[int] = field(default_factory=set)  # numbers the replay sent, not to send again
    decided: float = field(default_factory=time.monotonic)  # when the bind was last decided


class SubscriptionConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        websocket.serving_loop(asyncio.get_running_loop())
        self.ctx: AccessContext | None = None
        self.caller: dict = {}
        self.bound: dict[str, _Bound] = {}
        header = _header(self.scope, b"authorization")
        if header is not None:
            try:
                self.ctx = await database_sync_to_async(self._authenticate)(header)
            except FhirError as exc:
                await database_sync_to_async(self._audit_refusal)(exc)
                await self.close()  # before accept: the handshake is refused (HTTP 403)
                return
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for fhir_id in list(getattr(self, "bound", {})):
            await self.channel_layer.group_discard(websocket.group_name(fhir_id), self.channel_name)
        self.bound = {}

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self.send("error messages are text: bind <id>")
            return
        if len(text_data) > _MAX_MESSAGE:
            await self.send("error message too long")
            return
        words = text_data.split()
        command, arguments = (words[0].lower(), words[1:]) if words else ("", [])
        if command == "bind" and len(arguments) in (1, 2):
            await self._bind(arguments[0], arguments[1] if len(arguments) == 2 else None)
        elif command == "bind-with-token" and len(arguments) == 1:
            await self._bind_with_token(arguments[0])
        elif command == "unbind" and len(arguments) == 1:
            await self._unbind(arguments[0])
        else:
            await self.send(_USAGE)

    async def subscription_ping(self, event: dict) -> None:
        """A notification of a subscription (channels/websocket.py), to every socket bound to it."""
        fhir_id, number = event["subscription"], int(event["number"])
        bound = self.bound.get(fhir_id)
        if bound is None:
            return  # joined for a bind that was then refused, or unbound since
        if number in bound.replayed:
            bound.replayed.discard(number)
            return
        if time.monotonic() - bound.decided > settings.FHIR_WEBSOCKET_RECHECK_SECONDS:
            verdict = await database_sync_to_async(self._recheck)(fhir_id)
            if verdict == "credential":
                await self.send("error credential no longer valid: authenticate again")
                await self.close(code=CLOSE_UNAUTHORIZED)
                return
            if verdict == "refused":
                self.bound.pop(fhir_id, None)
                await self.channel_layer.group_discard(websocket.group_name(fhir_id), self.channel_name)
                await self.send(NOT_FOUND.format(id=fhir_id))
                return
            bound.decided = time.monotonic()
        await self.send(f"ping {fhir_id} {number}" if bound.numbered else f"ping {fhir_id}")

    async def _bind(self, fhir_id: str, cursor_text: str | None) -> None:
        if not _ID.match(fhir_id):
            await self.send(NOT_FOUND.format(id=fhir_id[:64]))
            return
        if self.ctx is None:
            await self.send(
                f"error {fhir_id} authentication required: an Authorization header on the handshake, "
                "or bind-with-token <token> first"
            )
            return
        cursor = None
        if cursor_text is not None:
            if not cursor_text.isdigit() or len(cursor_text) > 18:
                await self.send(f"error {fhir_id} the event number must be a non-negative integer")
                return
            cursor = int(cursor_text)
        if fhir_id not in self.bound and len(self.bound) >= settings.FHIR_WEBSOCKET_MAX_BINDINGS:
            await self.send(
                f"error {fhir_id} at most {settings.FHIR_WEBSOCKET_MAX_BINDINGS} subscriptions per socket"
            )
            return
        group = websocket.group_name(fhir_id)
        # Joined before the replay is read, so that nothing delivered in between is missed.
        await self.channel_layer.group_add(group, self.channel_name)
        try:
            binding = await database_sync_to_async(self._decide)(fhir_id, cursor)
        except _CredentialGone:
            await self.send("error credential no longer valid: authenticate again")
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        except FhirError as exc:
            if fhir_id not in self.bound:
                await self.channel_layer.group_discard(group, self.channel_name)
            if exc.status == 422:  # readable, but not a websocket subscription: it may say so
                await self.send(f"error {fhir_id} {exc.issues[0].diagnostics}")
            elif exc.status in (403, 404, 410):  # missing, deleted, not readable: all alike
                await self.send(NOT_FOUND.format(id=fhir_id))
            else:  # a limit or a failure of the server's, whoever asks
                await self.send(f"error {fhir_id} the bind could not be completed, try again")
            return
        self.bound[fhir_id] = _Bound(numbered=cursor is not None, replayed=set(binding.missed))
        await self.send(f"bound {fhir_id}")
        if cursor is None:
            return
        for number in binding.missed:
            await self.send(f"ping {fhir_id} {number}")
        last = binding.missed[-1] if binding.missed else cursor
        await self.send(f"replayed {fhir_id} {last}" + (" more" if binding.more else ""))

    async def _bind_with_token(self, token: str) -> None:
        if self.ctx is not None:
            await self.send("error bind-with-token: this socket is already authenticated")
            return
        try:
            self.ctx = await database_sync_to_async(self._authenticate)(f"Bearer {token}")
        except FhirError as exc:
            await database_sync_to_async(self._audit_refusal)(exc)
            await self.send(f"error bind-with-token: {exc.issues[0].diagnostics}")
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        await self.send("authenticated")

    async def _unbind(self, fhir_id: str) -> None:
        if self.bound.pop(fhir_id, None) is None:
            await self.send(f"error {fhir_id[:64]} not bound")
            return
        await self.channel_layer.group_discard(websocket.group_name(fhir_id), self.channel_name)
        await self.send(f"unbound {fhir_id}")

    # --- sync parts, run in a thread by database_sync_to_async ---

    def _origin(self, method: str) -> Origin:
        client = self.scope.get("client") or (None, None)
        return Origin(
            transport="websocket",
            method=method,
            path=self.scope.get("path", ""),
            client_ip=client[0],
            user_agent=(_header(self.scope, b"user-agent") or "")[:300],
        )

    def _authenticate(self, header: str) -> AccessContext:
        ctx = authenticate_bearer(
            header, request_id=_header(self.scope, b"x-request-id"), origin=self._origin("CONNECT")
        )
        self.caller = caller_of(ctx)
        return ctx

    def _recheck(self, fhir_id: str) -> str:
        """ "ok", "credential" (the socket's caller is no longer one) or "refused" (that bind)."""
        try:
            self._decide(fhir_id, None, method="RECHECK")
        except _CredentialGone:
            return "credential"
        except FhirError:
            return "refused"
        return "ok"

    def _audit_refusal(self, exc: FhirError) -> None:
        ctx = AccessContext.public(uuid.uuid4().hex, self._origin("CONNECT"))
        door.record_outside(ctx, "bind", ("", ""), exc.status, exc.issues[0].diagnostics)

    def _decide(self, fhir_id: str, cursor: int | None, method: str = "BIND"):
        # A fresh context per bind: the door keeps per-call notes on it, and a socket lives long
        # enough for memoised lookups (rule-set version, the identity's organisations) to go stale.
        assert self.ctx is not None
        ctx = dataclasses.replace(
            self.ctx, request_id=uuid.uuid4().hex, origin=self._origin(method), cache={}
        )
        if not caller_alive(self.caller):
            door.record_outside(ctx, "read", ("Subscription", fhir_id), 401, "credential no longer valid")
            raise _CredentialGone
        return bind(
            ctx,
            resource_type="Subscription",
            fhir_id=fhir_id,
            cursor=cursor,
            limit=settings.FHIR_WEBSOCKET_REPLAY_LIMIT,
        )


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None
