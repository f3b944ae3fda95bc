"""A development SMTP sink (aiosmtpd): accepts every message on STREAMQ_SMTP_HOST:STREAMQ_SMTP_PORT
and prints it, so the email task type can be tried with `make run` and no real mail server.

    python -m deploy.smtp_sink      # started by `make run` unless STREAMQ_SMTP_HOST is configured

Ctrl-C (SIGINT) or SIGTERM stops it quietly whenever it comes: while it loads, serves or stops.
"""

from __future__ import annotations

import os
import signal
from typing import Any

MAX_PRINTED = 2000


def exit_now(_signum: int, _frame: object) -> None:
    """While the sink loads and binds: nothing to close yet, so exit at once (no traceback)."""
    os._exit(0)


class PrintingHandler:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        from email import message_from_bytes, policy
        from email.message import EmailMessage

        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        body = message.get_body(preferencelist=("plain", "html"))
        text = body.get_content() if body is not None else ""
        print(
            f"--- mail from {envelope.mail_from} to {', '.join(envelope.rcpt_tos)}\n"
            f"Subject: {message['Subject']}\nMessage-ID: {message['Message-ID']}\n"
            f"{text[:MAX_PRINTED]}\n---",
            flush=True,
        )
        return "250 Message accepted for delivery"


async def serve(host: str, port: int) -> None:
    import asyncio
    import contextlib

    from aiosmtpd.smtp import SMTP

    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(PrintingHandler()), host, port)
    stop = asyncio.Event()

    def request_stop(_signum: int, _frame: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop already closed: the process is exiting
            loop.call_soon_threadsafe(stop.set)

    # plain handlers (not loop.add_signal_handler, which the loop removes when it closes): a second
    # signal while stopping (Ctrl-C, then make run's SIGTERM) is then ignored, not fatal
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    print(f"smtp sink listening on {host}:{port}; every message is printed here", flush=True)
    await stop.wait()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # stopping: Python would restore the default (fatal) at exit
    server.close()
    await server.wait_closed()


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, exit_now)  # first, so a signal while asyncio and aiosmtpd load exits quietly
    import asyncio

    host = os.environ.get("STREAMQ_SMTP_HOST", "127.0.0.1")
    port = int(os.environ.get("STREAMQ_SMTP_PORT", "2525"))
    asyncio.run(serve(host, port))


if __name__ == "__main__":
    main()
