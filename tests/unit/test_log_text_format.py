"""The text log format (``STREAMQ_LOG_FORMAT=text``) shows the same fields as the JSON format."""

from __future__ import annotations

import json
import logging

from pydantic import SecretStr

from streamq.shared.logging import JsonFormatter, TextFormatter


def record(msg: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("streamq.worker", logging.INFO, __file__, 1, msg, None, None)
    rec.__dict__.update(extra)
    return rec


def test_text_lines_carry_every_field_quoted_where_needed() -> None:
    rec = record(
        "task failed", task="0190-ab", attempt=2, error='RuntimeError: bad "x" = y\nline 2', recorded=True,
        next_at=None, secret=SecretStr("hunter2"), labels={"a": 1}, url="http://127.0.0.1:9100/metrics",
        empty="", color_message="\x1b[36mtask failed\x1b[0m",
    )  # fmt: skip
    line = TextFormatter("worker").format(rec)
    assert line.endswith(
        'worker INFO streamq.worker: task failed task=0190-ab attempt=2 error="RuntimeError: bad \\"x\\" = y\\nline 2"'
        ' recorded=true next_at=null secret=********** labels="{\\"a\\":1}" url=http://127.0.0.1:9100/metrics empty=""'
    ), line
    assert "hunter2" not in line and "\x1b" not in line
    entry = json.loads(JsonFormatter("worker").format(rec))  # the same fields, the same masking
    assert entry["task"] == "0190-ab" and entry["secret"] == "**********"


def test_a_line_without_fields_is_the_message_alone() -> None:
    assert TextFormatter("api").format(record("api starting")).endswith("api INFO streamq.worker: api starting")
