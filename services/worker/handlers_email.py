"""The ``email`` task type: one message over SMTP (aiosmtplib), to Mailtrap or any SMTP server.

Payload: the seed's plain address string, or ``{"to", "cc", "bcc", "subject", "text", "html",
"reply_to", "headers"}`` (see ``shared/payloads.py``). SMTP 4xx answers and connection problems are
retried with the task's back-off; 5xx answers fail the task at once (:class:`Permanent`), with the
server's reply in the error. The Message-ID is derived from the task id, so a retried send carries
the same one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any

import aiosmtplib
from pydantic import ValidationError

from streamq.services.worker.registry import TaskContext, handler
from streamq.shared import tracing
from streamq.shared.errors import Permanent
from streamq.shared.payloads import EmailPayload, parse_email
from streamq.shared.settings import Settings


class SmtpTemporaryError(Exception):
    """A 4xx answer or a connection problem: the task is retried with its back-off."""


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str = "localhost"
    port: int = 587
    username: str = ""
    password: str = field(default="", repr=False)
    sender: str = "streamq@localhost"
    tls: str = "starttls"  # none, starttls, implicit
    timeout_s: float = 30.0


_config = SmtpConfig()


def configure(settings: Settings) -> None:
    """Take the ``STREAMQ_SMTP_*`` settings (called by the worker at start)."""
    global _config
    _config = SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value(),
        sender=settings.smtp_from,
        tls=settings.smtp_tls,
        timeout_s=settings.smtp_timeout_s,
    )


def build_message(p: EmailPayload, sender: str, task_id: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(p.to_list())
    if p.cc:
        msg["Cc"] = ", ".join(p.cc)
    if p.reply_to:
        msg["Reply-To"] = p.reply_to
    msg["Subject"] = p.subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "streamq"
    msg["Message-ID"] = f"<{task_id}@{domain}>"
    msg["X-Streamq-Task"] = task_id
    for name, value in p.headers.items():
        msg[name] = value
    if p.text is not None and p.html is not None:
        msg.set_content(p.text)
        msg.add_alternative(p.html, subtype="html")
    elif p.html is not None:
        msg.set_content(p.html, subtype="html")
    else:
        msg.set_content(p.text or "")
    return msg


def _reply(code: int, message: str) -> str:
    return f"{code} {message}".strip()


def _raise_for(error: aiosmtplib.SMTPException) -> None:
    """Turn an SMTP failure into a permanent (5xx) or retried (4xx, connection) task failure."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        replies = [f"{r.recipient}: {_reply(r.code, r.message)}" for r in error.recipients]
        text = "recipients refused: " + "; ".join(replies)
        if all(r.code >= 500 for r in error.recipients):
            raise Permanent(f"SMTP {text}") from error
        raise SmtpTemporaryError(text) from error
    if isinstance(error, aiosmtplib.SMTPResponseException) and not isinstance(error, aiosmtplib.SMTPServerDisconnected):
        text = f"SMTP {type(error).__name__}: {_reply(error.code, error.message)}"
        if error.code >= 500:
            raise Permanent(text) from error
        raise SmtpTemporaryError(text) from error
    raise SmtpTemporaryError(f"{type(error).__name__}: {error}") from error


@handler("email")
async def send_email(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    try:
        p = parse_email(payload)
    except ValidationError as error:
        raise Permanent(f"invalid email payload: {error}") from None
    config = _config
    msg = build_message(p, config.sender, ctx.task_id)
    if tracing.ENABLED:
        return await _traced(msg, p.recipients(), config)
    return await _send(msg, p.recipients(), config)


async def _traced(msg: EmailMessage, recipients: list[str], config: SmtpConfig) -> dict[str, Any]:
    """:func:`_send` in a CLIENT span (a child of the run's ``process email`` span). The message carries
    no ``traceparent``: its headers reach the recipients, and no mail server reads one."""
    attributes: dict[str, Any] = {
        "server.address": config.host,
        "server.port": config.port,
        "network.protocol.name": "smtp",
        "streamq.email.recipient_count": len(recipients),
    }
    with tracing.client_span("SMTP send", **attributes) as span:
        result = await _send(msg, recipients, config)  # a failure is recorded on the span as its exception
        if result["refused"]:
            span.set_attribute("streamq.email.refused_count", len(result["refused"]))
        return result


async def _send(msg: EmailMessage, recipients: list[str], config: SmtpConfig) -> dict[str, Any]:
    """One SMTP transaction; the task's result, or the run's failure (retried or permanent)."""
    try:
        refused, response = await aiosmtplib.send(
            msg,
            sender=parseaddr(config.sender)[1],
            recipients=recipients,
            hostname=config.host,
            port=config.port,
            username=config.username or None,
            password=config.password or None,
            use_tls=config.tls == "implicit",
            start_tls=config.tls == "starttls",
            timeout=config.timeout_s,
        )
    except aiosmtplib.SMTPException as error:
        _raise_for(error)
        raise  # pragma: no cover - _raise_for always raises
    except OSError as error:
        raise SmtpTemporaryError(f"cannot reach the SMTP server {config.host}:{config.port}: {error}") from error
    return {
        "message_id": msg["Message-ID"],
        "to": recipients,
        "accepted": [r for r in recipients if r not in refused],
        "refused": {r: _reply(resp.code, resp.message) for r, resp in refused.items()},
        "response": response,
    }
