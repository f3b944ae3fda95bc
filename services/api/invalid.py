"""The 422 body: FastAPI's own error list, made safe to send whatever the client sent.

- ``input`` (and each text in ``loc``) is echoed only up to ``MAX_ECHO_CHARS``: a longer value is
  replaced by the first ``MAX_ECHO_CHARS`` characters of its JSON text (of a string: of the string)
  and ``…``. Measured without recursion, so a deeply nested input cannot fail the answer.
- NaN and infinities are shown as text (JSON cannot carry them).
- A lone surrogate (``"\\ud800"`` is valid JSON text, but not encodable as UTF-8) is written back as
  its ``\\uXXXX`` escape.
"""

from __future__ import annotations

import json
import math
from itertools import islice
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

MAX_ECHO_CHARS = 256
ELLIPSIS = "…"


class ErrorJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        # surrogates only occur inside JSON strings, where "\udXXX" is their escape
        return text.encode("utf-8", "backslashreplace")


def validation_body(errors: Any) -> dict[str, Any]:
    """``{"detail": errors}`` with each error's ``input`` and ``loc`` bounded (see the module)."""
    bounded = [_bounded_error(e) if isinstance(e, dict) else e for e in errors]
    return {"detail": _finite(jsonable_encoder(bounded))}


def _bounded_error(error: dict[str, Any]) -> dict[str, Any]:
    error = dict(error)
    if "input" in error:
        error["input"] = echo(error["input"])
    if "loc" in error:
        error["loc"] = [_cut(part) if isinstance(part, str) else part for part in error["loc"]]
    return error


def echo(value: Any) -> Any:
    """``value`` as sent when its JSON text is at most ``MAX_ECHO_CHARS`` long, else its prefix."""
    if isinstance(value, str):
        return _cut(value)
    if not isinstance(value, dict | list | int | float | None):  # a validated object (a model): its JSON form
        value = jsonable_encoder(value)
    text = json_prefix(value, MAX_ECHO_CHARS + 1)
    return value if len(text) <= MAX_ECHO_CHARS else text[:MAX_ECHO_CHARS] + ELLIPSIS


def _cut(text: str) -> str:
    return text if len(text) <= MAX_ECHO_CHARS else text[:MAX_ECHO_CHARS] + ELLIPSIS


class _Token(str):
    """Literal JSON text on the writer's stack (a bracket, a comma, a key)."""


def json_prefix(value: Any, limit: int) -> str:
    """The first ``limit`` characters of ``value``'s compact JSON text (all of it when shorter),
    written without recursion; a container's children beyond what ``limit`` can show are never read."""
    parts: list[str] = []
    size = 0
    stack: list[Any] = [value]
    while stack and size < limit:
        piece = _piece(stack.pop(), stack, limit)
        parts.append(piece)
        size += len(piece)
    return "".join(parts)[:limit]


def _piece(item: Any, stack: list[Any], limit: int) -> str:
    """The text of a scalar or token; for a container its opening bracket, its rest pushed on ``stack``."""
    if isinstance(item, _Token):
        return item
    if isinstance(item, dict):
        entries = list(islice(item.items(), limit))  # each entry is at least 2 characters
        stack.append(_Token("}"))
        for i, (key, child) in reversed(list(enumerate(entries))):
            stack.append(child)
            stack.append(_Token(("," if i else "") + json.dumps(str(key)[:limit], ensure_ascii=False) + ":"))
        return "{"
    if isinstance(item, list | tuple):
        children = list(islice(item, limit))
        stack.append(_Token("]"))
        for i, child in reversed(list(enumerate(children))):
            stack.append(child)
            if i:
                stack.append(_Token(","))
        return "["
    if isinstance(item, str):
        return json.dumps(item[:limit], ensure_ascii=False)
    if item is None or isinstance(item, bool | int | float):
        return json.dumps(item)
    return json.dumps(str(item)[:limit], ensure_ascii=False)


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by its text, so it can be sent as JSON (only bounded
    values reach it)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value
