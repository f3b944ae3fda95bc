"""Running a service until SIGTERM/SIGINT: signals become an Event; the service drains within its
grace period; a hard deadline ends whatever is left."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

log = logging.getLogger("streamq.lifecycle")


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, _on_signal, stop, sig)


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    if not stop.is_set():
        log.info("signal received; shutting down", extra={"signal": sig.name})
    stop.set()


def run(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` on uvloop when available; ``stop`` is set on SIGTERM or SIGINT."""

    async def _runner() -> None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
        await main(stop)

    try:
        import uvloop

        uvloop.run(_runner())
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(_runner())
