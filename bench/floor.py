"""``python -m bench.floor``: the bare consumer of the ``floor`` workload (bench/workloads/floor.py).

A process of its own, like a worker, on uvloop like the services, over a hand-encoded RESP socket:
it blocks in XREADGROUP (``COUNT`` entries at most), stamps ``time.time()`` for each entry as soon
as the reply is parsed (where a worker would enter the handler) and acknowledges the batch in the
same round trip as its next read. Nothing else: no task state, no events, no script. On SIGTERM it
writes ``[[entry's t field, stamp], ...]`` as JSON to ``FLOOR_OUT`` and exits.

Environment: ``FLOOR_REDIS`` (host:port), ``FLOOR_STREAM``, ``FLOOR_GROUP``, ``FLOOR_CONSUMER``,
``FLOOR_COUNT``, ``FLOOR_OUT``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import orjson

from bench.workloads.resp import Resp, encode

BLOCK_MS = "100"  # how soon a stop is noticed; a read returns as soon as an entry comes


async def consume(host: str, port: int, stream: str, group: str, name: str, count: int) -> list[list[float]]:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    conn = await Resp.open(host, port)
    read = encode("XREADGROUP", "GROUP", group, name, "COUNT", str(count), "BLOCK", BLOCK_MS, "STREAMS", stream, ">")
    stamps: list[list[float]] = []
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


def main() -> None:
    import uvloop

    env = os.environ
    host, _, port = env["FLOOR_REDIS"].rpartition(":")
    stamps = uvloop.run(
        consume(host, int(port), env["FLOOR_STREAM"], env["FLOOR_GROUP"], env["FLOOR_CONSUMER"], int(env["FLOOR_COUNT"]))
    )
    Path(env["FLOOR_OUT"]).write_bytes(orjson.dumps(stamps))


if __name__ == "__main__":
    main()
