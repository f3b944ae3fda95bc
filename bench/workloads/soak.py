"""soak: a steady submit + drain load for ``--soak-s`` seconds with a short retention; Redis's memory
and every service's RSS sampled once a second. A bounded store plateaus: the figures say whether it did.

Load: one api, ``cfg.workers`` workers (default concurrency), a scheduler, a notifier and a dashboard
(all real processes, so each one's RSS is watched); ``POST /api/tasks/batch`` of ``--soak-batch``
noop tasks paced to ``--soak-rate`` tasks/s over one keep-alive connection. Retention: completed
tasks bounded to ``--soak-keep`` (count) and 30 s (age); the events stream to
``--soak-events-maxlen``. Both are what a deployment sets to keep Redis small; the soak shows that
pruning keeps up with the load and that nothing else grows.

Figures, over the second half of the run (the first half is the warm-up: the bounds fill):
``redis_plateau_mb`` (median ``used_memory``), ``redis_band_pct`` (the largest distance of a sample
from that median, % of it: within 10 is the issue's bar), ``redis_slope_pct_per_min`` (least-squares
slope, % of the plateau per minute: a leak shows as a steady positive slope), the same for each
service's RSS (``rss_<service>_*``; workers: the larger of the two), ``tasks_per_s`` (completed over
the run), ``backlog_end`` (submitted minus completed at the end: the load was sustained when small),
``kept_end`` (completed tasks held at the end), ``kept_max`` and ``waiting_max`` (the most completed
tasks held, and pending tasks, in a sample of the second half: pruning's and the workers' lag),
``flat`` (yes when every band is within 10%; runs under 2 minutes give no verdict).
"""

from __future__ import annotations

import asyncio
import base64
import statistics
import sys
import time
from pathlib import Path

from bench.env import Service, until
from bench.workloads.base import Context, Figures
from bench.workloads.http import Connection, encode_post
from streamq.testing import free_port

AGE_S = 30  # the completed tasks' age bound (the count bound, --soak-keep, is the one that holds)
FLAT_PCT = 10.0  # the bar: within 10% of the plateau over the second half
# shorter runs (make bench's default) give the figures but no verdict: the bounds are still filling, and
# the janitor's pruning every 5 s is a sawtooth as large as a small plateau's 10%
VERDICT_S = 120
SECRET = "whsec_" + base64.b64encode(b"bench-soak-webhook-secret-01234").decode()


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (``VmRSS`` in /proc), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def slope_per_min(times: list[float], values: list[float]) -> float:
    """Least-squares slope of ``values`` over ``times`` (s), per minute."""
    mean_t, mean_v = statistics.fmean(times), statistics.fmean(values)
    var = sum((t - mean_t) ** 2 for t in times)
    if var == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values, strict=True)) / var * 60


def flatness(times: list[float], values: list[float]) -> tuple[float, float, float]:
    """(plateau = median, band = largest distance from it in %, slope in % of it per minute)."""
    plateau = statistics.median(values)
    if plateau <= 0:
        return 0.0, 0.0, 0.0
    band = max(abs(v - plateau) for v in values) / plateau * 100
    return plateau, band, slope_per_min(times, values) / plateau * 100


async def _submit(base: str, rate: float, batch: int, seconds: float, sent: list[int]) -> None:
    """Batches of noop tasks paced to ``rate`` tasks/s until ``seconds`` have passed."""
    body = b'{"tasks":[' + b",".join([b'{"type":"noop"}'] * batch) + b"]}"
    request = encode_post(base, "/api/tasks/batch", body)
    conn = await Connection.open(base)
    try:
        t0 = time.perf_counter()
        i = 0
        while time.perf_counter() - t0 < seconds:
            delay = t0 + i * batch / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            status, reply = await conn.send(request)
            if status != 201:
                raise RuntimeError(f"soak: submit {status} {reply[:300]!r}")
            sent[0] += batch
            i += 1
    finally:
        await conn.close()


async def run(ctx: Context) -> Figures:
    cfg = ctx.config
    stack = ctx.stack()
    keys = stack.keys
    bounds = {
        "STREAMQ_RETENTION_COMPLETED_COUNT": str(cfg.soak_keep),
        "STREAMQ_RETENTION_COMPLETED_AGE_S": str(AGE_S),
        "STREAMQ_EVENTS_MAXLEN": str(cfg.soak_events_maxlen),
        "STREAMQ_WEBHOOK_SECRET": SECRET,
    }
    try:
        base, api = await stack.api(**bounds)
        workers = await stack.workers(ctx.redis, cfg.workers, cfg.default_concurrency, **bounds)
        services: dict[str, list[Service]] = {
            "api": [api],
            "worker": workers,
            "scheduler": [stack.start("streamq.services.scheduler", **bounds)],
            "notifier": [stack.start("streamq.services.notifier", **bounds)],
            "dashboard": [
                stack.start(
                    "streamq.dashboard", STREAMQ_API_URL=base, STREAMQ_DASHBOARD_PORT=str(free_port()), **bounds
                )
            ],
        }
        every = [s for group in services.values() for s in group]

        async def registered() -> bool:  # every process started (its RSS is past its imports)
            return int(await ctx.redis.zcard(keys.services)) >= len(every)

        await until(registered, *every, what="every service registered")
        sent = [0]
        samples: list[dict[str, float]] = []
        submitting = asyncio.create_task(_submit(base, cfg.soak_rate, cfg.soak_batch, cfg.soak_s, sent))
        t0 = time.monotonic()
        completed0 = int(await ctx.redis.hget(keys.stats, "completed_total") or 0)
        try:
            while not submitting.done():
                await asyncio.sleep(1.0)
                for service in every:
                    service.check()
                sample = {"t": time.monotonic() - t0, "redis": float((await ctx.redis.info("memory"))["used_memory"])}
                for name, group in services.items():
                    sample[name] = float(max(rss_bytes(s.proc.pid) for s in group))
                sample["waiting"] = float(await ctx.redis.zcard(keys.index_status("pending")))
                sample["kept"] = float(await ctx.redis.zcard(keys.index_status("completed")))
                samples.append(sample)
                if len(samples) % 30 == 0:
                    print(
                        f"soak: {sample['t']:.0f} s, redis {sample['redis'] / 1e6:.1f} MB, "
                        f"{sample['waiting']:.0f} waiting, {sample['kept']:.0f} completed kept",
                        file=sys.stderr,
                    )
            await submitting
        finally:
            submitting.cancel()
        wall = time.monotonic() - t0
        completed = int(await ctx.redis.hget(keys.stats, "completed_total") or 0) - completed0
        kept = int(await ctx.redis.zcard(keys.index_status("completed")))
    finally:
        stack.stop()
    half = [s for s in samples if s["t"] >= wall / 2]
    figures: Figures = {
        "seconds": round(wall, 1),
        "tasks_per_s": completed / wall,
        "backlog_end": float(sent[0] - completed),
    }
    figures["kept_end"] = float(kept)
    figures["kept_max"] = max((s["kept"] for s in half), default=0.0)  # the count bound plus what pruning lags
    figures["waiting_max"] = max((s["waiting"] for s in half), default=0.0)  # pending: the workers' lag
    bands = []
    for name in ("redis", *services):
        plateau, band, slope = flatness([s["t"] for s in half], [s[name] for s in half])
        label = name if name == "redis" else f"rss_{name}"
        figures[f"{label}_plateau_mb"] = plateau / 1e6
        figures[f"{label}_band_pct"] = band
        figures[f"{label}_slope_pct_per_min"] = slope
        bands.append(band)
    if wall < VERDICT_S:
        figures["flat"] = f"n/a (under {VERDICT_S} s: --soak-s 600)"
    else:
        figures["flat"] = "yes" if max(bands) <= FLAT_PCT else "no"
    return figures
