"""The SSRF guard shared by webhook delivery and the ``http`` task type.

A URL is refused when its scheme is not http/https, when it carries user info, when its host is a
localhost name, or when ANY address the host resolves to is loopback, private, link-local (the
cloud metadata address 169.254.169.254 included), unique-local, carrier-grade NAT, benchmark,
multicast, reserved or unspecified -- checked again on the IPv4 address embedded in IPv4-mapped,
IPv4-compatible, NAT64, 6to4 and Teredo IPv6 forms. Odd IPv4 spellings (``127.1``, ``2130706433``,
``0x7f000001``, ``017700000001``) are caught because the check runs on what the resolver returns.

The host is resolved once per connection and the connection goes to the address that was checked
(no second lookup, so DNS rebinding cannot swap it), while the URL, ``Host`` header and TLS SNI /
certificate check keep the name. ``STREAMQ_ALLOW_PRIVATE_NETWORKS=true`` lifts the address check
(development, tests); ``STREAMQ_WEBHOOK_ALLOWED_HOSTS`` lists names that skip it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
RESOLVE_TIMEOUT_S = 5.0

_V4_BLOCKED = [
    ("0.0.0.0/8", "'this network' (0.0.0.0/8)"),
    ("10.0.0.0/8", "private (10.0.0.0/8)"),
    ("100.64.0.0/10", "carrier-grade NAT (100.64.0.0/10)"),
    ("127.0.0.0/8", "loopback (127.0.0.0/8)"),
    ("169.254.0.0/16", "link-local / cloud metadata (169.254.0.0/16)"),
    ("172.16.0.0/12", "private (172.16.0.0/12)"),
    ("192.0.0.0/24", "IETF protocol assignments (192.0.0.0/24)"),
    ("192.0.2.0/24", "documentation (192.0.2.0/24)"),
    ("192.88.99.0/24", "6to4 relay anycast (192.88.99.0/24)"),
    ("192.168.0.0/16", "private (192.168.0.0/16)"),
    ("198.18.0.0/15", "benchmarking (198.18.0.0/15)"),
    ("198.51.100.0/24", "documentation (198.51.100.0/24)"),
    ("203.0.113.0/24", "documentation (203.0.113.0/24)"),
    ("224.0.0.0/4", "multicast (224.0.0.0/4)"),
    ("240.0.0.0/4", "reserved (240.0.0.0/4)"),
]
_V6_BLOCKED = [
    ("::/128", "unspecified (::)"),
    ("::1/128", "loopback (::1)"),
    ("::ffff:0:0/96", "IPv4-mapped (::ffff:0:0/96)"),
    ("64:ff9b:1::/48", "local-use NAT64 (64:ff9b:1::/48)"),
    ("100::/64", "discard-only (100::/64)"),
    ("2001:db8::/32", "documentation (2001:db8::/32)"),
    ("fc00::/7", "unique-local (fc00::/7)"),
    ("fe80::/10", "link-local (fe80::/10)"),
    ("fec0::/10", "site-local (fec0::/10)"),
    ("ff00::/8", "multicast (ff00::/8)"),
]
V4_NETS = [(ipaddress.IPv4Network(n), r) for n, r in _V4_BLOCKED]
V6_NETS = [(ipaddress.IPv6Network(n), r) for n, r in _V6_BLOCKED]
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
COMPAT = ipaddress.IPv6Network("::/96")


class BlockedUrl(ValueError):
    """The URL or one of its addresses is refused; ``str()`` is the reason."""


def embedded_v4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses carried inside an IPv6 one (mapped, compatible, NAT64, 6to4, Teredo)."""
    found = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if (ip in COMPAT and int(ip) > 0xFFFF) or ip in NAT64:  # not :: or ::1
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found += list(ip.teredo)
    return found


def blocked_reason(address: str | IPAddress) -> str | None:
    """Why an address is refused, or None when it is a public unicast address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        for v4 in embedded_v4(ip):
            inner = blocked_reason(v4)
            if inner is not None:
                return f"{ip} embeds {v4}, which is {inner.split(' is ', 1)[-1]}"
        for net6, reason in V6_NETS:
            if ip in net6:
                return f"{ip} is {reason}"
    else:
        for net4, reason in V4_NETS:
            if ip in net4:
                return f"{ip} is {reason}"
    if not ip.is_global or ip.is_multicast or ip.is_reserved:
        return f"{ip} is not a public unicast address"
    return None


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (one lookup)."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP), RESOLVE_TIMEOUT_S
    )
    seen: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        if sockaddr[0] not in seen:
            seen.append(str(sockaddr[0]))
    return seen


def _is_localhost_name(host: str) -> bool:
    name = host.lower().rstrip(".")
    return name in ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback") or name.endswith(
        ".localhost"
    )


class SsrfGuard:
    """Checks URLs and addresses; ``transport()`` builds an httpx transport that enforces it."""

    def __init__(
        self,
        *,
        allow_private: bool = False,
        allowed_hosts: Iterable[str] = (),
        resolver: Resolver = system_resolve,
    ) -> None:
        self.allow_private = allow_private
        self.allowed_hosts = frozenset(h.lower().rstrip(".") for h in allowed_hosts)
        self.resolver = resolver

    @classmethod
    def from_settings(cls, settings: Any) -> SsrfGuard:
        return cls(allow_private=settings.allow_private_networks, allowed_hosts=settings.webhook_allowed_hosts)

    def is_allowed_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.allowed_hosts

    def check_static(self, url: str) -> tuple[str, int]:
        """Checks that need no lookup; returns (host, port). Raises :class:`BlockedUrl`."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as error:
            raise BlockedUrl(f"not a valid URL: {error}") from None
        if parts.scheme not in ("http", "https"):
            raise BlockedUrl(f"scheme {parts.scheme!r} is not allowed; use http or https")
        if "@" in parts.netloc or parts.username is not None:
            raise BlockedUrl("URLs with user info (user@host) are not allowed")
        host = parts.hostname
        if not host:
            raise BlockedUrl("the URL has no host")
        if self.allow_private or self.is_allowed_host(host):
            return host, port or (443 if parts.scheme == "https" else 80)
        if _is_localhost_name(host):
            raise BlockedUrl(f"host {host!r} is a localhost name")
        try:
            literal = ipaddress.ip_address(host.rstrip("."))
        except ValueError:
            literal = None
        if literal is not None and (reason := blocked_reason(literal)):
            raise BlockedUrl(f"host address {reason}")
        return host, port or (443 if parts.scheme == "https" else 80)

    def check_addresses(self, host: str, addresses: Sequence[str]) -> None:
        if self.allow_private or self.is_allowed_host(host):
            return
        if not addresses:
            raise BlockedUrl(f"host {host!r} resolves to no address")
        for address in addresses:
            reason = blocked_reason(address)
            if reason is not None:
                raise BlockedUrl(f"host {host!r} resolves to {reason}")

    async def resolve(self, host: str, port: int) -> list[str]:
        """Resolve once and check every address; returns them (the first is the one to use)."""
        if _is_localhost_name(host) and not (self.allow_private or self.is_allowed_host(host)):
            raise BlockedUrl(f"host {host!r} is a localhost name")
        addresses = await self.resolver(host, port)
        self.check_addresses(host, addresses)
        return addresses

    async def check_url(self, url: str, *, require_dns: bool = False) -> None:
        """Everything but the connection: raises :class:`BlockedUrl` with the reason. A name that
        does not resolve passes unless ``require_dns`` (it is checked again at connect time)."""
        host, port = self.check_static(url)
        if self.allow_private or self.is_allowed_host(host):
            return
        try:
            addresses = await self.resolver(host, port)
        except (OSError, TimeoutError):
            if require_dns:
                raise BlockedUrl(f"host {host!r} does not resolve") from None
            return
        self.check_addresses(host, addresses)

    def transport(
        self, *, verify: ssl.SSLContext | bool = True, max_connections: int = 100
    ) -> httpx.AsyncBaseTransport:
        return PinnedTransport(self, verify=verify, max_connections=max_connections)


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Resolves through the guard once per connection and connects to the checked address."""

    def __init__(self, guard: SsrfGuard) -> None:
        self.guard = guard
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self.guard.resolve(host, port)
        except (OSError, TimeoutError) as error:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {error}") from error
        return await self.inner.connect_tcp(
            addresses[0], port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedUrl("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with the guard in its connection pool; ignores proxy environment variables
    (a proxy would make the connection, bypassing the pinned address)."""

    def __init__(self, guard: SsrfGuard, *, verify: ssl.SSLContext | bool = True, max_connections: int = 100) -> None:
        super().__init__(verify=verify, trust_env=False)
        ssl_context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=max_connections,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=PinnedBackend(guard),
        )


def guarded_client(guard: SsrfGuard, timeout_s: float, *, verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    """An httpx client that never follows redirects, ignores proxy settings and enforces the guard."""
    return httpx.AsyncClient(
        transport=guard.transport(verify=verify),
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        trust_env=False,
    )
