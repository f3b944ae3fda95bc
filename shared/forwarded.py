"""Which peers' ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed, for the api and the dashboard.

uvicorn rewrites a request's client address and scheme from those headers when the connection comes
from a trusted address. Its default trusts loopback, so any local client (or anything a local proxy
passes on unchanged) could pick its own address, escaping the api's per-address rate limit, or claim
https, making the dashboard set a ``Secure`` cookie over plain http. Here nothing is trusted unless
configured (``STREAMQ_API_TRUSTED_PROXIES``, ``STREAMQ_DASHBOARD_TRUSTED_PROXIES``).
"""

from __future__ import annotations

import ipaddress
from typing import Any


def parse_trusted_proxies(entries: list[str]) -> list[str]:
    """Each entry as an address (``10.0.0.5``) or network (``10.0.0.0/8``), normalised; raises ValueError
    naming an entry that is neither (uvicorn would silently never match it)."""
    trusted = []
    for entry in entries:
        try:
            parsed = ipaddress.ip_network(entry, strict=False) if "/" in entry else ipaddress.ip_address(entry)
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/8)") from None
        trusted.append(str(parsed))
    return trusted


def server_options(trusted: list[str]) -> dict[str, Any]:
    """``uvicorn.Config`` options: forwarded headers count only from ``trusted``; with none (the
    default) they are ignored, loopback included, and the connection's own address and scheme count."""
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": list(trusted)}
