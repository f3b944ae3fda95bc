"""Container health check: ``python -m shared.healthcheck``.

GETs ``STREAMQ_HEALTHCHECK_URL`` when set (a service's health or metrics endpoint) and expects 2xx;
otherwise PINGs Redis at ``STREAMQ_REDIS_URL``. Exit code 0 = healthy, 1 = not.
"""

from __future__ import annotations

import asyncio
import os
import sys

import httpx

from shared.redis import make_client
from shared.settings import load_settings


async def _redis_ok() -> bool:
    client = make_client(load_settings())
    try:
        return bool(await asyncio.wait_for(client.ping(), 3))
    finally:
        await client.aclose()


def main() -> int:
    url = os.environ.get("STREAMQ_HEALTHCHECK_URL")
    try:
        if url:
            return 0 if httpx.get(url, timeout=3).is_success else 1
        return 0 if asyncio.run(_redis_ok()) else 1
    except Exception as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
