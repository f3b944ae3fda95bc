"""Container health check: ``python -m streamq.shared.healthcheck [--live]``.

GETs ``STREAMQ_HEALTHCHECK_URL`` when set (a service's health endpoint) and expects 2xx. Otherwise,
with ``STREAMQ_METRICS_PORT`` set (worker, scheduler, notifier), GETs that port's ``/readyz``
(``/livez`` with ``--live``; see :mod:`streamq.shared.health`). Otherwise PINGs Redis at ``STREAMQ_REDIS_URL``.
Exit code 0 = healthy, 1 = not.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

import httpx

from streamq.shared.health import LIVE_PATH, READY_PATH
from streamq.shared.redis import make_client, ping
from streamq.shared.settings import Settings, load_settings

WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")


async def _redis_ok(settings: Settings) -> bool:
    client = make_client(settings)
    try:
        await asyncio.wait_for(ping(client), 3)
        return True
    finally:
        await client.aclose()


def default_url(settings: Settings, live: bool = False) -> str | None:
    """The service's own probe on its metrics port, or None when it serves none (port 0)."""
    if settings.metrics_port == 0:
        return None
    host = "127.0.0.1" if settings.metrics_host in WILDCARD_HOSTS else settings.metrics_host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.metrics_port}{LIVE_PATH if live else READY_PATH}"


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        settings = load_settings()
        url = os.environ.get("STREAMQ_HEALTHCHECK_URL") or default_url(settings, live="--live" in args)
        if url:
            return 0 if httpx.get(url, timeout=3).is_success else 1
        return 0 if asyncio.run(_redis_ok(settings)) else 1
    except Exception as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
