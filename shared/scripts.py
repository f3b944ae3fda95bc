"""Lua scripts: read once from ``shared/lua``, registered once per client, called by name.

State-change scripts get ``lib.lua`` prepended (shared helpers and the common KEYS layout);
``fetch.lua`` stands alone. Each ``.lua`` file starts with a header listing KEYS, ARGV and returns.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

STANDALONE = frozenset({"fetch", "ratelimit"})  # scripts that do not use lib.lua's common KEYS layout
LIBRARY = "lib"


@cache
def names() -> tuple[str, ...]:
    """Every script in ``shared/lua`` but the library."""
    folder = resources.files("shared") / "lua"
    return tuple(
        sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".lua") and p.name != f"{LIBRARY}.lua")
    )


@cache
def source(name: str) -> str:
    folder = resources.files("shared") / "lua"
    text = (folder / f"{name}.lua").read_text()
    if name in STANDALONE:
        return text
    return (folder / f"{LIBRARY}.lua").read_text() + "\n" + text


class Scripts:
    """The registered scripts of one client (EVALSHA, reloaded on NOSCRIPT)."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._scripts: dict[str, AsyncScript] = {name: client.register_script(source(name)) for name in names()}

    async def call(self, name: str, keys: list[str], args: list[Any], client: Any = None) -> Any:
        return await self._scripts[name](keys=keys, args=args, client=client)

    async def call_many(self, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        """Several script calls in one round trip (a pipeline without MULTI: each script is still its
        own atomic call). Returns each call's reply or the exception it raised. A script the server
        does not know (NOSCRIPT: it did not run) is loaded and called again on its own."""
        pipe = self._client.pipeline(transaction=False)
        for name, keys, args in calls:
            pipe.evalsha(self._scripts[name].sha, len(keys), *keys, *args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        for i, (name, keys, args) in enumerate(calls):
            if isinstance(replies[i], NoScriptError):
                try:
                    replies[i] = await self.call(name, keys, args)
                except Exception as error:  # handed back like the pipeline's own errors
                    replies[i] = error
        return replies
