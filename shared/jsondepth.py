"""How deeply JSON nests, measured without recursion: client input may nest thousands of levels,
and Python's parser, encoders and validators recurse once per level.

``[]`` and ``{}`` are one level, ``[[1]]`` two; a scalar is zero.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

MAX_PAYLOAD_DEPTH = 64  # a task's payload (shared/models.py)
MAX_BODY_DEPTH = 100  # a request body, checked before it is parsed: a batch's payloads sit 3 levels down

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string with its escapes
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def text_deeper_than(text: bytes, limit: int) -> bool:
    """Whether JSON text nests deeper than ``limit``, brackets inside strings aside. Text with no more
    than ``limit`` opening brackets (nearly every request) is answered from two counts; otherwise the
    scan runs in C (regex, translate, accumulate) and stops at the first level over the limit."""
    if text.count(b"[") + text.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", text).translate(None, _NOT_BRACKETS)
    depths = accumulate(map(_STEP.__getitem__, brackets))
    return next(filter(limit.__lt__, depths), None) is not None


def value_deeper_than(value: Any, limit: int) -> bool:
    """Whether a parsed JSON value (dicts, lists, scalars) nests deeper than ``limit``."""
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
