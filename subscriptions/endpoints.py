"""Where notifications may go: the endpoint forms of each channel and the allow-list.

Endpoint forms:
- rest-hook: `http://` or `https://` URL;
- websocket: no endpoint (clients connect to `[base]/websocket` and bind);
- email: `mailto:someone@example.org`;
- message: `http(s)://...` (the FHIR message is POSTed, as `$process-message` receives it),
  `redis://host:port/db?stream=NAME` (appended to a Redis Stream), `amqp://user:pass@host:port/vhost
  ?exchange=NAME&routing_key=KEY` (published to RabbitMQ; default exchange and the queue named by
  `routing_key` when no exchange is given).

The allow-list is `FHIR_SUBSCRIPTION_ALLOWED_ENDPOINTS`: comma-separated host names, addresses and
CIDR ranges. Public addresses are always allowed; private, loopback, link-local and other special
ranges only when listed (a subscription must not turn the server into a probe of its own network).
A literal address is checked when the subscription is written; names, and every address, on every
connection, against the address actually connected to (a name that later resolves elsewhere does
not get through). An IPv6 address that embeds an IPv4 one is judged by both. An allow-list entry
admits every port of its host.
"""

from __future__ import annotations

import ipaddress
import socket
from functools import cache
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.validators import EmailValidator, ValidationError


class EndpointRefused(ValueError):
    """An endpoint of the wrong form, or one the allow-list refuses; the message says which."""


class Unresolved(EndpointRefused):
    """The endpoint's host name does not resolve (now)."""


_SCHEMES = {
    "rest-hook": ("http", "https"),
    "message": ("http", "https", "redis", "rediss", "amqp", "amqps"),
}


def check(channel_type: str, endpoint: str) -> None:
    """Refuse an endpoint of the wrong form for its channel, or one the allow-list does not admit."""
    if channel_type == "websocket":
        return
    if not endpoint:
        raise EndpointRefused(f"A {channel_type} subscription needs Subscription.channel.endpoint")
    if channel_type == "email":
        address = endpoint.removeprefix("mailto:")
        if not endpoint.startswith("mailto:"):
            raise EndpointRefused("An email subscription's endpoint is 'mailto:address'")
        try:
            EmailValidator()(address)
        except ValidationError as exc:
            raise EndpointRefused(f"'{address}' is not an email address") from exc
        return
    try:
        parts = urlsplit(endpoint)
        parts.hostname  # noqa: B018 - a malformed bracketed host raises here
    except ValueError as exc:
        raise EndpointRefused(f"The endpoint '{endpoint}' is not a valid URL") from exc
    if parts.scheme not in _SCHEMES[channel_type]:
        raise EndpointRefused(
            f"A {channel_type} endpoint must be a {' or '.join(_SCHEMES[channel_type])} URL, not '{endpoint}'"
        )
    if not parts.hostname:
        raise EndpointRefused(f"The endpoint '{endpoint}' names no host")
    if parts.scheme.startswith("redis") and not parse_qs(parts.query).get("stream"):
        raise EndpointRefused("A Redis endpoint names its stream: redis://host:port/db?stream=NAME")
    try:
        parts.port  # noqa: B018 - an invalid port raises here
    except ValueError as exc:
        raise EndpointRefused(f"The endpoint '{endpoint}' has an invalid port") from exc
    host = parts.hostname
    try:
        literal = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        # A name is checked at every delivery, not here: answering differently for names that resolve
        # to private addresses and names that do not resolve would tell a subscriber about the
        # server's network.
        return
    if not allowed(host, str(literal)):
        raise EndpointRefused(
            f"The endpoint's address '{host}' is not allowed: private and local addresses must be "
            "listed in FHIR_SUBSCRIPTION_ALLOWED_ENDPOINTS"
        )


def addresses(host: str, port: int) -> list[tuple]:
    """The socket addresses of `host` the allow-list admits (getaddrinfo tuples), or EndpointRefused."""
    try:
        infos = socket.getaddrinfo(host, port or None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolved(
            f"The endpoint's host '{host}' cannot be reached: not resolved, or not allowed"
        ) from exc
    admitted = [info for info in infos if allowed(host, info[4][0])]
    if not admitted:
        # The same words as for a name that does not resolve: the subscriber learns nothing of the
        # server's network from a delivery's error.
        raise EndpointRefused(f"The endpoint's host '{host}' cannot be reached: not resolved, or not allowed")
    return admitted


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPATIBLE = ipaddress.ip_network("::/96")


def allowed(host: str, address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    names, networks = _allow_list(settings.FHIR_SUBSCRIPTION_ALLOWED_ENDPOINTS)
    if host.lower() in names or any(ip in network for network in networks):
        return True
    if not ip.is_global or ip.is_multicast:
        return False
    # An IPv6 address that carries an IPv4 one (mapped, 6to4, Teredo, NAT64, IPv4-compatible) is
    # judged by that address too: a gateway would deliver to it.
    return all(allowed(host, str(inner)) for inner in _embedded(ip))


def _embedded(ip) -> list:
    if ip.version != 6:
        return []
    inner = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
    if ip in _NAT64 or ip in _COMPATIBLE:
        inner.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [one for one in inner if one is not None]


@cache
def _allow_list(text: str) -> tuple[frozenset[str], tuple]:
    names, networks = set(), []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            if not item.replace("-", "").replace(".", "").isalnum():
                raise ImproperlyConfigured(
                    f"FHIR_SUBSCRIPTION_ALLOWED_ENDPOINTS: '{item}' is neither a host name, an address "
                    "nor a CIDR range"
                ) from None
            names.add(item.lower())
    return frozenset(names), tuple(networks)


def origin(endpoint: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of a URL endpoint; None when it has none."""
    try:
        parts = urlsplit(endpoint)
        return (parts.scheme, (parts.hostname or "").lower(), parts.port)
    except ValueError:
        return None


def password(endpoint: str) -> str | None:
    try:
        return urlsplit(endpoint).password
    except ValueError:
        return None


def username(endpoint: str) -> str | None:
    try:
        return urlsplit(endpoint).username
    except ValueError:
        return None


def with_password(endpoint: str, secret: str) -> str:
    parts = urlsplit(endpoint)
    user, _, host = parts.netloc.rpartition("@")
    name = user.split(":", 1)[0]
    return parts._replace(netloc=f"{name}:{secret}@{host}").geturl()


def connect(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to an admitted address of `host` (the check and the connection use the same
    address, so a name that resolves differently between them cannot slip through)."""
    last: Exception | None = None
    for family, kind, proto, _, address in addresses(host, port):
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect((address[0], port, *address[2:]))
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError(f"could not connect to {host}:{port}")
