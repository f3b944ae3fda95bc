"""``python -m bench.floor``: the bare consumer of the ``floor`` workload (bench/workloads/floor.py).

A process of its own, like a worker, on uvloop like the services, over a hand-encoded RESP socket,
stamping ``time.time()`` for each entry as soon as the reply is parsed (where a worker would enter
the handler). Two kinds (``FLOOR_STATE``):
- bare (``0``): blocks in XREADGROUP (``COUNT`` entries at most) and acknowledges the batch in the
  same round trip as its next read. No task state, no events, no script. Stamps ``[entry's t field,
  stamp]``.
- state (``1``): takes tasks as a worker does, with the project's own take.lua (task state, status
  indexes, the ``started`` event): while idle, XREADGROUP BLOCK as the staging consumer with take.lua
  right behind it in the same write; while take.lua returns tasks, take.lua again at once. No worker
  code and no client library on the way. Stamps ``[task id, stamp]``.
On SIGTERM it writes its stamps as JSON to ``FLOOR_OUT`` and exits.

Environment: ``FLOOR_REDIS`` (host:port), ``FLOOR_STREAM`` (state: the key prefix), ``FLOOR_GROUP``,
``FLOOR_CONSUMER``, ``FLOOR_COUNT``, ``FLOOR_STATE``, ``FLOOR_OUT``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import orjson

from bench.workloads.resp import Resp, encode
from streamq.services.worker.intake import take_call
from streamq.shared.keys import KeySchema
from streamq.shared.scripts import source
from streamq.shared.settings import Settings

EVENTS_MAXLEN: int = Settings.model_fields["events_maxlen"].default  # the services' default

BLOCK_MS = "100"  # how soon a stop is noticed; a read returns as soon as an entry comes


async def consume(host: str, port: int, stream: str, group: str, name: str, count: int) -> list[list[float | str]]:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    conn = await Resp.open(host, port)
    read = encode("XREADGROUP", "GROUP", group, name, "COUNT", str(count), "BLOCK", BLOCK_MS, "STREAMS", stream, ">")
    stamps: list[list[float | str]] = []
    ack: list[bytes] = []
    try:
        while not stop.is_set():
            payload = (encode("XACK", stream, group, *ack) if ack else b"") + read
            reply = (await conn.pipeline(payload, 2 if ack else 1))[-1]
            ack = []
            for entry_id, fields in reply[0][1] if reply else ():
                stamps.append([float(fields[1]), time.time()])  # fields: [b"t", reference time]
                ack.append(entry_id)
    finally:
        await conn.close()
    return stamps


async def consume_state(
    host: str, port: int, prefix: str, group: str, name: str, count: int
) -> list[list[float | str]]:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    conn = await Resp.open(host, port)
    part = KeySchema(prefix, "default")
    [sha] = await conn.pipeline(encode("SCRIPT", "LOAD", source("take")), 1)
    staging = name + "~staged"

    def take(via: str) -> bytes:  # as a worker calls it
        keys, args = take_call(part, count, consumer=name, events_maxlen=EVENTS_MAXLEN, staging=via)
        return encode("EVALSHA", sha, str(len(keys)), *keys, *map(str, args))

    block = encode("XREADGROUP", "GROUP", group, staging, "COUNT", "1", "BLOCK", BLOCK_MS, "STREAMS",
                   *part.streams(), *([">"] * len(part.streams())))  # fmt: skip
    idle_take, busy_take = block + take(staging), take("")
    stamps: list[list[float | str]] = []
    idle = True
    try:
        while not stop.is_set():
            replies = await conn.pipeline(idle_take if idle else busy_take, 2 if idle else 1)
            rows = replies[-1]
            for row in rows:
                stamps.append([row[2].decode(), time.time()])
            idle = not rows
    finally:
        await conn.close()
    return stamps


def main() -> None:
    import uvloop

    env = os.environ
    host, _, port = env["FLOOR_REDIS"].rpartition(":")
    run = consume_state if env.get("FLOOR_STATE") == "1" else consume
    stamps = uvloop.run(
        run(host, int(port), env["FLOOR_STREAM"], env["FLOOR_GROUP"], env["FLOOR_CONSUMER"], int(env["FLOOR_COUNT"]))
    )
    Path(env["FLOOR_OUT"]).write_bytes(orjson.dumps(stamps))


if __name__ == "__main__":
    main()
