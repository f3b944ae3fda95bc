"""take.lua / promote.lua / submit.lua / finish.lua of a git revision against the working tree's,
interleaved on one Redis (``python -m bench.scriptab``).

``bench.scriptcost`` measures one version per process, so two versions are compared across runs that
another process on a shared VM disturbs differently. Here both versions run in one private
redis-server, each on its own queue (same setup as ``bench.scriptcost``: 5,000 tasks scheduled for
later), round by round and in alternating order, and each round's figures are paired: the median of
the per-round ratios (B / A) is much steadier than either median. Phases: ``promote`` (500 tasks due
at once, promoted in one call, then taken and finished so the next round starts from empty indexes)
and ``take`` (256 tasks submitted, taken in one call, finished), whose submit and finish calls are
the ``submit`` and ``finish`` phases: the life of an ungrouped task. Only those four scripts and the
lib.lua definitions they use come from the revision; every other script is the working tree's.

    .venv/bin/python -m bench.scriptab --base main --rounds 60
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.env import RedisServer, load
from bench.scriptcost import FINISH_BATCH, Bench, measure, outcome
from streamq.shared.scripts import assemble

SCRIPTS = ("take", "promote", "submit", "finish")
LUA = Path(__file__).resolve().parent.parent / "shared" / "lua"


def sources(rev: str | None) -> dict[str, str]:
    """SCRIPTS with the lib.lua definitions they use (as streamq.shared.scripts assembles
    them), from ``rev`` or the working tree."""

    def read(name: str) -> str:
        if rev is None:
            return (LUA / f"{name}.lua").read_text()
        return subprocess.run(
            ["git", "show", f"{rev}:shared/lua/{name}.lua"], cwd=LUA, check=True, capture_output=True, text=True
        ).stdout

    lib = read("lib")
    if rev is not None and (theirs := _layout(lib)) != (ours := _layout((LUA / "lib.lua").read_text())):
        # the KEYS lists are built by the working tree's Python: another layout reads the wrong keys
        raise SystemExit(
            f"{rev}'s lib.lua expects another KEYS layout ({theirs} against the working tree's {ours}): "
            "compare revisions of the same layout"
        )
    return {name: assemble(read(name), lib) for name in SCRIPTS}


def _layout(lib: str) -> str:
    """lib.lua's common KEYS layout, as its FIRST_TASK_KEY line (changed in 4494f02: no index of all)."""
    return next((line for line in lib.splitlines() if line.startswith("local FIRST_TASK_KEY")), "none")


async def bench_for(server: RedisServer, queue: str, scripts: dict[str, str]) -> Bench:
    redis = server.client()
    b = Bench(redis, "scriptab", queue)
    for name, text in scripts.items():
        b.queue.scripts._scripts[name] = redis.register_script(text)
    await b.setup()
    return b


async def main_async(base: str, rounds: int, phases: list[str]) -> None:
    server = RedisServer()
    benches = [await bench_for(server, "a", sources(base)), await bench_for(server, "b", sources(None))]
    r = benches[0].redis
    results: dict[tuple[str, int], list[tuple[float, float]]] = {(p, i): [] for p in phases for i in (0, 1)}
    started, started_load = time.monotonic(), load()
    try:
        for n in range(rounds + 1):  # round 0 warms up
            order = [0, 1] if n % 2 else [1, 0]
            if "promote" in phases:
                server_s, server_us = await r.time()
                due = datetime.fromtimestamp((server_s * 1000 + server_us // 1000 + 200) / 1000, UTC)
                for i in order:
                    await benches[i].submit(500, 500, due)
                await asyncio.sleep(0.25)
                for i in order:
                    b = benches[i]
                    before = b.promoter.promoted
                    us, cpu, _ = await measure(r, 500, b.promoter.promote_once([b.keys]))
                    assert b.promoter.promoted - before == 500
                    if n:
                        results[("promote", i)].append((us, cpu))
                for i in order:
                    b = benches[i]
                    await b.finish([outcome(j, "finish") for j in await b.take(500)])
            if {"take", "submit", "finish"} & set(phases):
                for i in order:
                    b = benches[i]
                    submitted = await measure(r, FINISH_BATCH, b.submit(FINISH_BATCH, FINISH_BATCH))
                    us, cpu, jobs = await measure(r, FINISH_BATCH, b.take(FINISH_BATCH))
                    assert len(jobs) == FINISH_BATCH
                    finished = await measure(r, FINISH_BATCH, b.finish([outcome(j, "finish") for j in jobs]))
                    assert set(finished[2]) == {"completed"}
                    for phase, figures in (("submit", submitted), ("take", (us, cpu)), ("finish", finished)):
                        if n and phase in phases:
                            results[(phase, i)].append((figures[0], figures[1]))
    finally:
        for b in benches:
            await b.redis.aclose()
        server.close()
    print(
        f"A = {base}, B = working tree; {rounds} rounds in {time.monotonic() - started:.1f} s, "
        f"load (1 min) {started_load} -> {load()}; EVALSHA us per task (commandstats), median and lowest round"
    )
    for phase in phases:
        a = [f[0] for f in results[(phase, 0)]]
        v = [f[0] for f in results[(phase, 1)]]
        ratio = statistics.median(y / x for x, y in zip(a, v, strict=True))
        print(
            f"{phase:<8} A {statistics.median(a):6.2f} ({min(a):.2f})   B {statistics.median(v):6.2f} ({min(v):.2f})"
            f"   B/A per round, median {ratio:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scriptab", description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="main", help="git revision of version A (default: main)")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--only", default=",".join(SCRIPTS), help="comma-separated, of: " + ", ".join(SCRIPTS))
    ns = parser.parse_args()
    phases = [p.strip() for p in ns.only.split(",") if p.strip()]
    unknown = set(phases) - set(SCRIPTS)
    if unknown:
        parser.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    asyncio.run(main_async(ns.base, ns.rounds, phases))


if __name__ == "__main__":
    main()
