"""``python -m bench``: run the workloads, print the table, write the JSON."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.config import WORKLOADS, Config
from bench.env import ROOT, RedisServer, has_scheduler, load, machine
from bench.report import Rounds, add_ratios, summarise, table
from bench.workloads import (
    cluster,
    direct,
    drain,
    floor,
    groups,
    latency,
    memory,
    otel,
    raw,
    schedule,
    soak,
    submit,
    wait,
    workflows,
)
from bench.workloads.base import Context, Figures

TINY: dict[str, Any] = {
    "runs": 1, "raw_n": 2_000, "single_n": 200, "single_clients": 8, "batch_n": 2_000, "batch_size": 500,
    "drain_n": 500, "tuned_concurrency": 32, "latency_n": 40, "latency_rate": 100.0, "wait_n": 40, "wait_rate": 100.0,
    "wait_waiters": 8, "schedule_n": 20, "direct_n": 40, "direct_many_n": 2_000,
    "memory_n": 500, "memory_ttl_s": 1, "otel_n": 1_000, "otel_pairs": 1, "soak_s": 4.0, "soak_rate": 200.0,
    "soak_keep": 200, "soak_events_maxlen": 1_000, "workflow_width": 48, "chain_length": 10, "held_n": 20,
}  # fmt: skip


def entries(cfg: Config) -> list[tuple[str, Callable[[Context], Awaitable[Figures]]]]:
    """(entry name, workload) in run order, for the selected workloads."""
    table: dict[str, list[tuple[str, Callable[[Context], Awaitable[Figures]]]]] = {
        "raw": [("raw", raw.run)],
        "floor": [("floor", floor.run)],
        "submit-single": [("submit-single", submit.single)],
        "submit-batch": [("submit-batch", submit.batch)],
        "drain": [
            ("drain-default", lambda ctx: drain.run(ctx, cfg.default_concurrency)),
            ("drain-tuned", lambda ctx: drain.run(ctx, cfg.tuned_concurrency)),
        ],
        "latency": [("latency", latency.run)],
        "wait": [("wait", wait.run)],
        "direct": [("direct", direct.run)],
        "schedule": [("schedule", schedule.run)],
        "memory": [("memory", memory.run)],
        "cluster": [("cluster-drain", cluster.run)],
        "otel": [("otel", otel.run)],
        "soak": [("soak", soak.run)],
        "workflows": [("workflows", workflows.run)],
        "groups": [
            ("groups-drain-default", lambda ctx: groups.drain(ctx, cfg.default_concurrency)),
            ("groups-drain-tuned", lambda ctx: groups.drain(ctx, cfg.tuned_concurrency)),
            ("groups-held", groups.held),
        ],
    }
    return [e for name in WORKLOADS if name in cfg.only for e in table[name]]


def parse(argv: list[str]) -> Config:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes and one run (the smoke test's)")
    parser.add_argument("--only", help=f"comma-separated workloads among: {', '.join(WORKLOADS)}")
    parser.add_argument("--out", help="JSON path (default bench/results/<date>.json)")
    parser.add_argument("--http-client", choices=("raw", "httpx"), help="load generator of the submit workloads")
    parser.add_argument("--profile", action="store_true", help="py-spy record each service (needs root)")
    parser.add_argument(
        "--trace", action="store_true", help="latency, schedule: each task's start by stage (bench/handlers.py)"
    )
    parser.add_argument(
        "--direct-taskiq",
        action="store_true",
        help="direct: also taskiq-redis's send-to-start (installs taskiq-redis into this venv; bench/peers.py)",
    )
    for f in dataclasses.fields(Config):
        if f.type in ("int", "float"):
            kind = int if f.type == "int" else float
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, dest=f.name, help=f"default {f.default}")
    args = parser.parse_args(argv)
    cfg = Config(**(TINY if args.tiny else {}))
    for f in dataclasses.fields(Config):
        value = getattr(args, f.name, None)
        if value is not None and f.name not in ("only", "out"):
            setattr(cfg, f.name, value)
    if args.only:
        cfg.only = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = set(cfg.only) - set(WORKLOADS)
        if unknown:
            parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    cfg.out = args.out
    cfg.profile = args.profile
    cfg.trace = args.trace
    cfg.http_client = args.http_client or cfg.http_client
    return cfg


async def run(cfg: Config, server: RedisServer, log_dir: Path, stamp: str) -> Rounds:
    redis = server.client()
    ctx = Context(cfg, server, redis, log_dir)
    rounds: Rounds = []
    try:
        for number in range(1, cfg.runs + 1):
            results: dict[str, dict[str, Any]] = {}
            for name, workload in entries(cfg):
                if number > {"memory": cfg.memory_runs, "otel": cfg.otel_runs, "soak": cfg.soak_runs}.get(name, number):
                    continue
                await redis.flushall()
                if cfg.profile:
                    ctx.profile_dir = ROOT / "bench" / "results" / f"profile-{stamp}" / f"{name}-{number}"
                before = load()
                started = time.monotonic()
                figures = await workload(ctx)
                seconds = time.monotonic() - started
                results[name] = {"figures": figures, "load": before, "seconds": round(seconds, 2)}
                print(f"run {number}/{cfg.runs} {name:14} {seconds:6.1f} s  load {before:.2f}  {_short(figures)}",
                      file=sys.stderr, flush=True)  # fmt: skip
            rounds.append(results)
    finally:
        await redis.aclose()
        if ctx.library is not None:
            await ctx.library.aclose()
    return rounds


def _short(figures: Figures) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items())


def main(argv: list[str] | None = None) -> None:
    cfg = parse(sys.argv[1:] if argv is None else argv)
    now = datetime.now(UTC)
    out = Path(cfg.out) if cfg.out else ROOT / "bench" / "results" / f"{now:%Y-%m-%dT%H%M%SZ}.json"
    log_dir = Path(tempfile.mkdtemp(prefix="streamq-bench-logs-"))
    server = RedisServer()
    try:
        rounds = asyncio.run(run(cfg, server, log_dir, f"{now:%Y-%m-%dT%H%M%SZ}"))
        redis_version = _redis_version(server)
    except BaseException:
        print(f"bench: failed; service logs kept in {log_dir}", file=sys.stderr)
        raise
    finally:
        server.close()
    shutil.rmtree(log_dir, ignore_errors=True)
    add_ratios(rounds)
    summary = summarise(rounds)
    report = {
        "date": now.isoformat(timespec="seconds"),
        "machine": {**machine(), "redis": redis_version, "load_after": load()},
        "scheduler": has_scheduler(),
        "config": cfg.as_dict(),
        "runs": rounds,
        "summary": summary,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    m = machine()
    print(
        f"\nstreamq bench {report['date']}  {m['cpu']}, {m['cores']} cores, Python {m['python']}, Redis {redis_version}"
    )
    print(table(summary, cfg.runs))
    print(f"\nwritten {out}")


def _redis_version(server: RedisServer) -> str:
    import redis

    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        return str(client.info("server")["redis_version"])
    finally:
        client.close()
