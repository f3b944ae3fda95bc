"""A development SMTP sink (aiosmtpd): accepts every message on STREAMQ_SMTP_HOST:STREAMQ_SMTP_PORT
and prints it, so the email task type can be tried with `make run` and no real mail server.

    python -m deploy.smtp_sink      # started by `make run` unless STREAMQ_SMTP_HOST is configured
"""

from __future__ import annotations

import asyncio
import os
import signal
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP

MAX_PRINTED = 2000


class PrintingHandler:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
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
    loop = asyncio.get_running_loop()
    handler = PrintingHandler()
    server = await loop.create_server(lambda: SMTP(handler), host, port)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"smtp sink listening on {host}:{port}; every message is printed here", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main() -> None:
    host = os.environ.get("STREAMQ_SMTP_HOST", "127.0.0.1")
    port = int(os.environ.get("STREAMQ_SMTP_PORT", "2525"))
    asyncio.run(serve(host, port))


if __name__ == "__main__":
    main()
