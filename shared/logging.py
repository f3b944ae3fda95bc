"""Structured logging: one JSON object per line, or one text line per record for development
(``STREAMQ_LOG_FORMAT=text``): the message followed by the same fields as ``key=value``."""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson

from streamq.shared import tracing

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_TEXT_SKIPPED = {"color_message"}  # uvicorn's message again with ANSI colours
_BARE = re.compile(r"[^\s\"=\\]+")  # a text value that needs no quotes


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """A record's structured fields: what the caller passed as ``extra`` (values are logged as given:
    callers redact URLs and secrets before logging), and the trace and span ids when tracing is on."""
    out = {key: value for key, value in record.__dict__.items() if key not in _RESERVED and not key.startswith("_")}
    if tracing.ENABLED:  # the span this line was logged in, to find the trace from the log and back
        ids = tracing.current_ids()
        if ids is not None:
            out["trace_id"], out["span_id"] = ids
    return out


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(fields(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def text_value(value: Any) -> str:
    """One field's value for the text format: bare when it can be (numbers, ids, URLs), else in double
    quotes with quotes, backslashes and line breaks escaped; lists and dicts as compact JSON."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value
    elif isinstance(value, int | float):
        return repr(value)
    elif isinstance(value, list | tuple | dict):
        text = orjson.dumps(value, default=str).decode()
    else:
        text = str(value)  # as the JSON format's default=str shows it (a SecretStr stays masked)
    if _BARE.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'


class TextFormatter(logging.Formatter):
    """``<time> <service> <LEVEL> <logger>: <message> key=value ...``, then the traceback, if any."""

    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        shown = ((key, value) for key, value in fields(record).items() if key not in _TEXT_SKIPPED)
        pairs = " ".join(f"{key}={text_value(value)}" for key, value in shown)
        return f"{line} {pairs}" if pairs else line


def setup_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
