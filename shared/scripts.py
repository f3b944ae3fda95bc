"""Lua scripts: read once from ``shared/lua``, registered once per client, called by name.

State-change scripts get the definitions of ``lib.lua`` (shared helpers and the common KEYS layout) that
they use, found by name and transitively (:func:`assemble`); ``ratelimit.lua``, ``indexes.lua``,
``writable.lua`` and ``schema_advance.lua`` stand alone. Each ``.lua`` file starts with a header listing
KEYS, ARGV and returns.

Flags (Redis 7's ``#!lua flags=...`` first line): ``indexes.lua``, the only script that only reads,
declares ``no-writes`` so that Redis runs it while it refuses writes (out of memory, read-only
replica, failed persistence); ``ratelimit.lua`` declares ``allow-oom`` (a small bucket that expires);
``writable.lua`` declares none, so Redis refuses it exactly when it refuses writes. The others declare
no flags on purpose: without a shebang Redis checks memory at a script's first write only, so a script
that frees memory (remove.lua's DEL, finish.lua's XDEL) still runs when Redis is full, and one refused
there has written nothing. A script with flags may touch only the keys it declares, in one hash slot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import pairwise
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streamq.shared.redis import route_to_key
from streamq.shared.redisfast import HeldConnection, HeldConnections

# scripts without lib.lua's common KEYS layout
STANDALONE = frozenset({"ratelimit", "indexes", "writable", "schema_advance"})
LIBRARY = "lib"


@cache
def names() -> tuple[str, ...]:
    """Every script in ``shared/lua`` but the library."""
    folder = resources.files("streamq.shared") / "lua"
    return tuple(
        sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".lua") and p.name != f"{LIBRARY}.lua")
    )


@cache
def source(name: str) -> str:
    """The source Redis gets for script ``name``: the file, with the ``lib.lua`` definitions it uses."""
    folder = resources.files("streamq.shared") / "lua"
    text = (folder / f"{name}.lua").read_text()
    if name in STANDALONE:
        return text
    return assemble(text, (folder / f"{LIBRARY}.lua").read_text())


def assemble(script: str, library: str) -> str:
    """``script`` with the definitions of ``library`` it uses, transitively, in the library's order.

    The result reads: the script's shebang (flags must stay the first line), its header comment (KEYS,
    ARGV, returns), one comment line naming what was included, the included definitions with their
    comments, then the rest of the script. Deterministic: the same two texts give the same source, so
    the same SHA. A script pays on each call for every definition it gets (each ``local function`` is a
    closure made per call), so it gets only those its code names."""
    shebang, rest = script.split("\n", 1) if script.startswith("#!") else ("", script)
    header = ""
    if rest.startswith("--[["):
        end = rest.index("\n", rest.index("]]")) + 1
        header, rest = rest[:end], rest[end:]
    units = library_units(library)
    defined = {name: i for i, unit in enumerate(units) for name in unit.names}
    wanted: set[int] = set()
    todo = [defined[name] for name in names_used(rest) if name in defined]
    while todo:
        i = todo.pop()
        if i not in wanted:
            wanted.add(i)
            todo.extend(defined[name] for name in units[i].uses if name in defined)
    chosen = [units[i] for i in sorted(wanted)]
    parts = [shebang + "\n" if shebang else "", header]
    if chosen:
        parts.append(f"-- lib.lua: {', '.join(n for unit in chosen for n in unit.names)}\n")
        parts.extend(unit.text for unit in chosen)
    parts.append(rest)
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class Unit:
    """One top-level ``local`` statement of the library, with the comment lines right above it."""

    text: str
    names: tuple[str, ...]  # what it defines
    uses: frozenset[str]  # every name its code mentions


_LONG_BRACKET = re.compile(r"\[(=*)\[")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LOCAL = re.compile(r"local\s+(?:function\s+([A-Za-z_]\w*)|([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*=)")


@cache
def library_units(library: str) -> tuple[Unit, ...]:
    """The library's top-level ``local`` statements (a ``local`` at the start of a line; a line that starts
    with ``--`` right above one belongs to it, as does a ``--[[ ]]`` block that ends right above it). The
    library's own header comment (before its first statement) is left out: each script has its own."""
    lines = library.splitlines(keepends=True)
    first = 0
    if library.startswith("--[["):
        first = next(i for i, line in enumerate(lines) if "]]" in line) + 1
    starts: list[int] = []
    in_block = False
    comment_from: int | None = None  # first line of the comment run right above the current line
    for i, line in enumerate(lines[first:], first):
        if in_block:
            in_block = "]]" not in line
            continue
        if line.startswith("local "):
            starts.append(i if comment_from is None else comment_from)
            comment_from = None
        elif line.startswith("--"):
            comment_from = i if comment_from is None else comment_from
            in_block = line.startswith("--[[") and "]]" not in line
        else:
            comment_from = None
    bounds = [*starts, len(lines)]
    units = []
    for start, end in pairwise(bounds):
        text = "".join(lines[start:end])
        code = strip_comments_and_strings(text)
        found = _LOCAL.search(code)
        if found is None:  # each unit starts at a top-level local: a line this scan misread
            raise ValueError(f"lib.lua line {start + 1}: no top-level local statement")
        defined = (found.group(1),) if found.group(1) else tuple(n.strip() for n in found.group(2).split(","))
        units.append(Unit(text, defined, frozenset(names_used(code)) - set(defined)))
    return tuple(units)


def names_used(code: str) -> set[str]:
    """The names Lua code mentions as variables (not as ``t.field`` or ``t:method``), comments and strings
    left out."""
    code = strip_comments_and_strings(code)
    found = set()
    for m in _NAME.finditer(code):
        before = code[max(0, m.start() - 2) : m.start()]
        if before.endswith((".", ":")) and not before.endswith(".."):
            continue
        found.add(m.group())
    return found


def strip_comments_and_strings(text: str) -> str:
    """``text`` with every Lua comment and string literal replaced by a blank (``--``, ``--[[ ]]``, quotes,
    ``[[ ]]`` and their ``[=[ ]=]`` forms); newlines in them are kept."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if text.startswith("--", i):
            long = _LONG_BRACKET.match(text, i + 2)
            if long:
                close = "]" + long.group(1) + "]"
                end = text.find(close, long.end())
                end = n if end < 0 else end + len(close)
            else:
                end = text.find("\n", i)
                end = n if end < 0 else end
        elif char in "'\"":
            end = i + 1
            while end < n and text[end] != char:
                end += 2 if text[end] == "\\" else 1
            end += 1
        elif (long := _LONG_BRACKET.match(text, i)) is not None:
            close = "]" + long.group(1) + "]"
            end = text.find(close, long.end())
            end = n if end < 0 else end + len(close)
        else:
            out.append(char)
            i += 1
            continue
        out.append(" " + "\n" * text.count("\n", i, end))
        i = end
    return "".join(out)


class Scripts:
    """The registered scripts of one client (EVALSHA, reloaded on NOSCRIPT)."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._scripts: dict[str, AsyncScript] = {name: client.register_script(source(name)) for name in names()}
        # standalone and Sentinel: calls go over the client's held connections (streamq.shared.redisfast)
        self._held = HeldConnections.of(client) if HeldConnection.usable(client) else None

    async def call(self, name: str, keys: list[str], args: list[Any], client: Any = None) -> Any:
        """One script call; its reply, or the error it raised. A script the server does not know
        (NOSCRIPT), and a call whose held connection failed, go through redis-py's script object, which
        loads the script and retries on a new connection (as every call did before held connections:
        a call that ran before its connection failed may run twice, as with any retried command)."""
        if client is None:
            replies = await self._held_calls([(name, keys, args)])
            if replies is not None and not isinstance(replies[0], NoScriptError):
                if isinstance(replies[0], Exception):
                    raise replies[0]
                return replies[0]
        return await self._scripts[name](keys=keys, args=args, client=client)

    async def _held_calls(self, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any] | None:
        """Each call's reply or error, sent in one write over a held connection; None on a cluster
        client, or when the connection failed (the caller then sends them the way redis-py retries)."""
        if self._held is None:
            return None
        try:
            return await self._held.exchange(*(self.call_command(*call) for call in calls))
        except (RedisConnectionError, RedisTimeoutError, OSError):
            return None

    async def call_then_wait(
        self, name: str, keys: list[str], args: list[Any], replicas: int, timeout_ms: int
    ) -> tuple[Any, int]:
        """One script call, then ``WAIT replicas timeout_ms`` on the same connection: the script's reply
        (raised if an error) and how many replicas confirmed the writes."""
        replies, acked = await self.call_many_then_wait([(name, keys, args)], replicas, timeout_ms)
        if isinstance(replies[0], Exception):
            raise replies[0]
        return replies[0], acked

    async def call_many_then_wait(
        self, calls: list[tuple[str, list[str], list[Any]]], replicas: int, timeout_ms: int
    ) -> tuple[list[Any], int]:
        """Like :meth:`call_many`, then ``WAIT replicas timeout_ms`` on every connection that ran a call
        (one pipeline; on a cluster the pipeline gives each node one connection, and each node gets its
        WAIT after its calls). Returns each call's reply (or error) and the fewest replicas any node
        confirmed. A call the server did not know (NOSCRIPT) is loaded and sent again with its own WAIT."""
        pipe = self._client.pipeline(transaction=False)
        waits: dict[str, dict[str, Any]] = {}
        for name, keys, args in calls:
            self.queue_call(pipe, name, keys, args)
            route = route_to_key(self._client, keys[0])
            waits.setdefault(getattr(route.get("target_nodes"), "name", ""), route)
        for route in waits.values():
            pipe.execute_command("WAIT", replicas, timeout_ms, **route)
        out: list[Any] = await pipe.execute(raise_on_error=False)
        replies, confirmed = out[: len(calls)], out[len(calls) :]
        for value in confirmed:
            if isinstance(value, Exception):
                raise value
        acked = min(int(v) for v in confirmed)
        for i, (name, keys, args) in enumerate(calls):
            if isinstance(replies[i], NoScriptError):
                await self._client.script_load(source(name))
                again = await self.call_many_then_wait([(name, keys, args)], replicas, timeout_ms)
                replies[i], acked = again[0][0], min(acked, again[1])
        return replies, acked

    def call_command(self, name: str, keys: list[str], args: list[Any]) -> tuple[Any, ...]:
        """One script call as a command's arguments (EVALSHA; a NOSCRIPT reply is the caller's to
        handle, e.g. by :meth:`unless_unknown`)."""
        return ("EVALSHA", self._scripts[name].sha, len(keys), *keys, *args)

    def queue_call(self, pipe: Any, name: str, keys: list[str], args: list[Any]) -> None:
        """Add one script call to ``pipe`` (see :meth:`call_command`)."""
        # execute_command, not pipe.evalsha: the cluster pipeline blocks the evalsha method but routes
        # EVALSHA by its keys (each call to the node of its slot) when sent this way
        pipe.execute_command(*self.call_command(name, keys, args))

    async def call_many(self, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        """Several script calls in one round trip (one write over a held connection, or a pipeline; never
        MULTI: each script is still its own atomic call). Returns each call's reply or the exception it
        raised. A script the server does not know (NOSCRIPT: it did not run) is loaded and called again
        on its own."""
        replies = await self._held_calls(calls)
        if replies is None:
            pipe = self._client.pipeline(transaction=False)
            for name, keys, args in calls:
                self.queue_call(pipe, name, keys, args)
            replies = await pipe.execute(raise_on_error=False)
        return [
            await self.unless_unknown(reply, name, keys, args)
            for reply, (name, keys, args) in zip(replies, calls, strict=True)
        ]

    async def unless_unknown(self, reply: Any, name: str, keys: list[str], args: list[Any]) -> Any:
        """A pipelined call's reply; if the server did not know the script (NOSCRIPT: it did not run), the
        script is loaded and called again on its own, and that reply (or error) is handed back instead."""
        if not isinstance(reply, NoScriptError):
            return reply
        try:
            return await self.call(name, keys, args)
        except Exception as error:  # handed back like the pipeline's own errors
            return error
