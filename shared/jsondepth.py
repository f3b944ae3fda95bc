"""How deeply JSON nests, measured without recursion: client input may nest thousands of levels,
and Python's parser, encoders and validators recurse once per level.

``[]`` and ``{}`` are one level, ``[[1]]`` two; a scalar is zero.
"""

from __future__ import annotations

import re

MAX_PAYLOAD_DEPTH = 64  # a task's payload (shared/models.py)
MAX_BODY_DEPTH = 100  # a request body, checked before it is parsed: a batch's payloads sit 3 levels down

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string with its escapes
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SQUARE = bytes.maketrans(b"{}", b"[]")


def text_deeper_than(text: bytes, limit: int) -> bool:
    """Whether JSON text nests deeper than ``limit``, brackets inside strings aside. Text with no more
    than ``limit`` opening brackets (nearly every request) is answered from two counts. Otherwise its
    brackets outside strings, ``{}`` read as ``[]``, lose their innermost pairs one level a pass (a
    replace in C: a 1,000-task batch takes four), at most ``limit`` passes."""
    if text.count(b"[") + text.count(b"{") <= limit:
        return False
    brackets = _outside_strings(text).translate(_SQUARE, _NOT_BRACKETS)
    if not brackets:  # every bracket was inside a string
        return False
    for passes in range(limit):
        inner = brackets.replace(b"[]", b"")
        if not inner:  # nested passes + 1 levels deep
            return False
        if len(inner) == len(brackets):  # an unbalanced rest (not JSON): its opens may sit on what was removed
            return passes + inner.count(b"[") > limit
        brackets = inner
    return True


def _outside_strings(text: bytes) -> bytes:
    """``text`` without its JSON strings. With no backslash in it no string holds an escaped quote, so
    quotes alternate between opening and closing one (a split, ten times faster than the regex on a
    1,000-task batch); otherwise the regex, which knows escapes."""
    if b"\\" not in text:
        return b"".join(text.split(b'"')[::2])
    return _STRING.sub(b"", text)
