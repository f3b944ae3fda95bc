"""Built-in task types: noop, echo, sleep, fail."""

from __future__ import annotations

import asyncio
from typing import Any

from streamq.services.worker.registry import handler


@handler("noop")
async def noop(payload: Any) -> None:
    return None


@handler("echo")
async def echo(payload: Any) -> Any:
    return payload


@handler("sleep")
async def sleep(payload: Any) -> float:
    seconds = float(payload or 0)
    await asyncio.sleep(seconds)
    return seconds


@handler("fail")
async def fail(payload: Any) -> None:
    raise RuntimeError(str(payload) if payload is not None else "failed on purpose")
