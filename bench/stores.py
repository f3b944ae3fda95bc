"""``python -m bench.stores``: every Redis store streamq keeps, what bounds it, and its measured bytes.

Starts a private redis-server and the services as real processes (api, worker, scheduler, notifier,
dashboard) on one key prefix, then makes every key family exist through them: tasks submitted through
the api that complete, fail (a dead letter each), are cancelled (waiting, and while running), wait on a
paused queue or for a due time; idempotency keys, webhooks delivered to a receiver started here,
schedules, a rate limit, the dashboard's history samples. The dashboard's login sessions and login
counters are written by their own classes (``SessionStore``, ``LoginThrottle``) on the same Redis.

Then every key is read back (``SCAN``), sorted into its family (the templates of ``shared/keys.py``),
and measured with ``MEMORY USAGE <key> SAMPLES 0`` (the whole value, not an estimate from samples).
Bytes per entry = the family's bytes / its entries (a task hash: one entry per key; a stream: per
entry; an index: per member). The bound of each family is written from the settings' defaults, so a
changed default shows in the regenerated page.

``--write docs/redis-stores.md`` writes the page; without it the table is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from bench.env import RedisServer, Stack, machine, until
from bench.workloads.http import answering
from streamq.dashboard.sessions import SessionStore
from streamq.dashboard.throttle import MAX_FAILURES, WINDOW_S, LoginThrottle
from streamq.shared.auth import ApiKey, Scope, digest, new_secret
from streamq.shared.deliveries import LOG_CAP
from streamq.shared.keys import KeySchema
from streamq.shared.settings import Settings
from streamq.testing import free_port

RATE = "100000/s burst 100000"  # the api's rate limit: every request passes, each client gets a bucket
SLEEP_S = 30  # the running tasks cancelled mid-run sleep this long (they are cancelled well before)


def _days(seconds: float) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400:g} d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600:g} h"
    return f"{seconds:g} s"


def _bounds(s: Settings) -> dict[str, str]:
    """The bound of each family, from the settings' defaults (README: Retention)."""
    finished = (
        f"retention per queue: completed {_days(s.retention_completed_age_s)} / {s.retention_completed_count:,}, "
        f"failed {_days(s.retention_failed_age_s)} / {s.retention_failed_count:,}, "
        f"cancelled {_days(s.retention_cancelled_age_s)} / {s.retention_cancelled_count:,} "
        f"(age / count, `STREAMQ_RETENTION_*`); at most `STREAMQ_RESULT_TTL_S` ({_days(s.result_ttl_s)})"
    )
    registration = "TTL three heartbeats (`STREAMQ_HEARTBEAT_S` x 3, at least 3 s); the zset pruned by each beat"
    return {
        "task": "unfinished: until it finishes; finished: " + finished,
        "stream": "the entry is deleted when its task is started (XACK + XDEL): unfinished tasks only",
        "idx_status": "one member per task: follows the tasks",
        "idx_type": "one member per task: follows the tasks",
        "scheduled": "one member per scheduled task: follows them",
        "wakeups": "`MAXLEN ~ 100` (lib.lua `wake_scheduler`): one entry per script call that scheduled a task",
        "retention": "one member per finished task: follows them",
        "dead": (
            f"retention per queue: {_days(s.retention_dead_letter_age_s)} / "
            f"{s.retention_dead_letter_count:,} dead letters; removed with their failed task"
        ),
        "events": f"`MAXLEN ~ {s.events_maxlen:,}` (`STREAMQ_EVENTS_MAXLEN`)",
        "stats": "fixed: one field per counter",
        "idem": f"TTL `STREAMQ_IDEMPOTENCY_TTL_S` ({_days(s.idempotency_ttl_s)})",
        "webhooks_due": "one member per delivery still to attempt: follows them",
        "webhook": (
            "removed with its task once delivered or given up (one still due: by the attempt that ends it); "
            f"TTL `STREAMQ_RESULT_TTL_S` ({_days(s.result_ttl_s)}) once ended"
        ),
        "deliveries": (
            f"`LTRIM` to the last {LOG_CAP} attempts; removed with its task; "
            f"TTL `STREAMQ_RESULT_TTL_S` ({_days(s.result_ttl_s)}) from the last attempt"
        ),
        "schedule": "one per schedule: what users create (no bound)",
        "schedules": "one member per schedule",
        "schedules_due": "one member per active schedule",
        "cancels": "`MAXLEN ~ 1,000` (cancel.lua)",
        "paused": "present while the queue (partition) is paused",
        "history": (
            f"`MINID` {_days(s.history_retention_s)} (`STREAMQ_HISTORY_RETENTION_S`), "
            f"a sample every {s.history_interval_s:g} s (`STREAMQ_HISTORY_INTERVAL_S`)"
        ),
        "history_lock": "TTL (the writing dashboard renews it)",
        "types": "one member per task type any worker advertised (what the code defines)",
        "workers": registration,
        "worker": registration,
        "services": registration,
        "service": registration,
        "ratelimit": "TTL: the time the bucket takes to refill",
        "dashsession": f"TTL `STREAMQ_DASHBOARD_SESSION_TTL_S` ({_days(s.dashboard_session_ttl_s)})",
        "dashlogin": f"TTL {WINDOW_S} s (the throttle's window; {MAX_FAILURES} failures refuse)",
        "queues": "one field per queue",
        "schema": "fixed: the version and a running migration's progress",
    }


@dataclass(frozen=True, slots=True)
class Family:
    name: str  # key of _bounds
    template: str  # as shared/keys.py writes it (the docs' first column)
    pattern: str  # regex of the key after "<prefix>:"
    holds: str
    entry: str  # what one entry is (the unit of bytes per entry)


TAG = r"\{[^}]+\}"
FAMILIES = [
    Family("task", "<p>:{<q>}:task:<id>", rf"{TAG}:task:.+", "one task (hash)", "task"),
    Family("stream", "<p>:{<q>}:stream:<priority>", rf"{TAG}:stream:\d", "runnable tasks' ids", "entry"),
    Family("idx_status", "<p>:{<q>}:idx:status:<status>", rf"{TAG}:idx:status:\w+", "ids per status", "task"),
    Family("idx_type", "<p>:{<q>}:idx:type:<type>", rf"{TAG}:idx:type:.+", "ids per task type", "task"),
    Family("scheduled", "<p>:{<q>}:scheduled", rf"{TAG}:scheduled", "ids by due time", "task"),
    Family("wakeups", "<p>:{<q>}:wakeups", rf"{TAG}:wakeups", "the scheduler's wake-ups", "wake-up"),
    Family("retention", "<p>:{<q>}:retention", rf"{TAG}:retention", "finished ids by deadline", "task"),
    Family("dead", "<p>:{<q>}:dead", rf"{TAG}:dead", "dead letters (id, error)", "dead letter"),
    Family("events", "<p>:{<q>}:events", rf"{TAG}:events", "lifecycle events", "event"),
    Family("stats", "<p>:{<q>}:stats", rf"{TAG}:stats", "lifetime counters", "key"),
    Family("idem", "<p>:{<q>}:idem:<key>", rf"{TAG}:idem:.+", "task id of an idempotency key", "key"),
    Family("webhooks_due", "<p>:{<q>}:webhooks:due", rf"{TAG}:webhooks:due", "deliveries by due time", "delivery"),
    Family("webhook", "<p>:{<q>}:webhook:<delivery>", rf"{TAG}:webhook:.+", "one webhook message", "delivery"),
    Family("deliveries", "<p>:{<q>}:deliveries:<task>", rf"{TAG}:deliveries:.+", "a task's attempts", "attempt"),
    Family("schedule", "<p>:{<q>}:schedule:<name>", rf"{TAG}:schedule:.+", "one periodic schedule", "schedule"),
    Family("schedules", "<p>:{<q>}:schedules", rf"{TAG}:schedules", "schedule names", "schedule"),
    Family("schedules_due", "<p>:{<q>}:schedules:due", rf"{TAG}:schedules:due", "next tick per schedule", "schedule"),
    Family("cancels", "<p>:{<q>}:cancels", rf"{TAG}:cancels", "cancel requests of running tasks", "request"),
    Family("paused", "<p>:{<q>}:paused", rf"{TAG}:paused", "a paused queue's flag", "key"),
    Family("history", "<p>:{<q>}:history", rf"{TAG}:history", "dashboard chart samples", "sample"),
    Family("history_lock", "<p>:{<q>}:history:lock", rf"{TAG}:history:lock", "the sampling dashboard's id", "key"),
    Family("types", "<p>:types", r"types", "advertised task types", "type"),
    Family("workers", "<p>:workers", r"workers", "worker ids by heartbeat", "worker"),
    Family("worker", "<p>:worker:<id>", r"worker:.+", "one worker's registration", "worker"),
    Family("services", "<p>:services", r"services", "service ids by heartbeat", "instance"),
    Family("service", "<p>:service:<id>", r"service:.+", "one service instance", "instance"),
    Family("ratelimit", "<p>:ratelimit:<client>", r"ratelimit:.+", "a client's token bucket", "client"),
    Family("dashsession", "<p>:dashsession:<hash>", r"dashsession:.+", "one dashboard login", "session"),
    Family("dashlogin", "<p>:dashlogin:<counter>", r"dashlogin:.+", "failed logins per address/key", "counter"),
    Family("queues", "<p>:queues", r"queues", "queue configs (JSON)", "queue"),
    Family("schema", "<p>:schema", r"schema", "layout version", "key"),
]


async def _entries(redis: Redis, key: str, kind: str) -> int:
    """The entries of one key by its type (a string or a hash counts as one: a hash is one record)."""
    if kind == "stream":
        return int(await redis.xlen(key))
    if kind == "zset":
        return int(await redis.zcard(key))
    if kind == "list":
        return int(await redis.llen(key))
    if kind == "set":
        return int(await redis.scard(key))
    return 1


PER_FIELD = {"queues"}  # hashes whose entries are their fields, not the key


async def measure(redis: Redis, prefix: str) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Per family: type, keys, entries, bytes; and the keys no family matched."""
    compiled = [(f, re.compile(re.escape(prefix) + ":" + f.pattern + "$")) for f in FAMILIES]
    out: dict[str, dict[str, Any]] = {}
    unknown: list[str] = []
    async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
        family = next((f for f, rx in compiled if rx.match(key)), None)
        if family is None:
            unknown.append(key)
            continue
        kind = str(await redis.type(key))
        size = int(await redis.memory_usage(key, samples=0) or 0)
        entries = int(await redis.hlen(key)) if family.name in PER_FIELD else await _entries(redis, key, kind)
        row = out.setdefault(family.name, {"type": kind, "keys": 0, "entries": 0, "bytes": 0})
        row["keys"] += 1
        row["entries"] += entries
        row["bytes"] += size
    return out, sorted(unknown)


def _hook_answer(head: bytes, _body: bytes) -> bytes:
    """A webhook receiver's answer: 503 on ``/down`` (the delivery stays due for its retry), else 200."""
    status = b"503 Service Unavailable" if head.startswith(b"POST /down ") else b"200 OK"
    return b"HTTP/1.1 " + status + b"\r\ncontent-length: 2\r\n\r\nok"


async def _count(redis: Redis, keys: KeySchema, status: str) -> int:
    return int(await redis.zcard(keys.index_status(status)))


async def populate(stack: Stack, redis: Redis, n: int, log: Callable[[str], None]) -> None:
    """Make every family exist through the running services (see the module's docstring)."""
    keys = stack.keys
    secret = new_secret()
    api_keys = f"bench:submit,read,admin:{digest(secret).hex()}"
    webhook_secret = "whsec_" + base64.b64encode(b"bench-stores-webhook-secret-0123").decode()
    common = {"STREAMQ_API_KEYS": api_keys, "STREAMQ_HEARTBEAT_S": "1", "STREAMQ_WEBHOOK_SECRET": webhook_secret}
    async with answering(_hook_answer) as hook_port:
        hook = f"http://127.0.0.1:{hook_port}/hook"
        down = f"http://127.0.0.1:{hook_port}/down"  # answers 503: these deliveries wait for their retry
        stack.start("streamq.services.worker", STREAMQ_WORKER_CONCURRENCY="64", **common)
        stack.start("streamq.services.scheduler", **common)
        stack.start(
            "streamq.services.notifier", STREAMQ_ALLOW_PRIVATE_NETWORKS="true", STREAMQ_WEBHOOK_POLL_S="0.05", **common
        )
        port = free_port()
        api = stack.start(
            "streamq.services.api",
            STREAMQ_API_PORT=str(port),
            STREAMQ_RATE_LIMIT=RATE,
            STREAMQ_ALLOW_PRIVATE_NETWORKS="true",
            **common,
        )
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as probe:

            async def ready() -> bool:
                try:
                    return (await probe.get(f"{url}/api/health", timeout=1.0)).status_code == 200
                except httpx.HTTPError:
                    return False

            await until(ready, api, what="api ready")
        stack.start(
            "streamq.dashboard",
            STREAMQ_API_URL=url,
            STREAMQ_DASHBOARD_PORT=str(free_port()),
            STREAMQ_DASHBOARD_API_KEY=secret,
            STREAMQ_HISTORY_INTERVAL_S="0.2",
            **common,
        )
        headers = {"authorization": f"Bearer {secret}"}
        later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:

            async def batch(tasks: list[dict[str, Any]]) -> list[str]:
                ids: list[str] = []
                for start in range(0, len(tasks), 500):
                    answer = await client.post("/api/tasks/batch", json={"tasks": tasks[start : start + 500]})
                    if answer.status_code != 201:
                        raise RuntimeError(f"stores: batch refused: {answer.status_code} {answer.text[:500]}")
                    ids += [t["id"] for t in answer.json()["tasks"]]
                return ids

            log(f"submitting {n} completed (idempotency keys), {n} failed, {n} with webhooks, {n} scheduled")
            retrying = n // 10
            await batch([{"type": "noop", "idempotency_key": f"k{i}"} for i in range(n)])
            await batch([{"type": "fail", "max_retries": 0} for _ in range(n)])
            await batch([{"type": "noop", "webhook": hook} for _ in range(n)])
            await batch([{"type": "noop", "webhook": down} for _ in range(retrying)])
            scheduled = await batch([{"type": "noop", "scheduled_for": later} for _ in range(n)])
            for task_id in scheduled[: n // 2]:  # half of them cancelled before they run
                (await client.post(f"/api/tasks/{task_id}/cancel")).raise_for_status()
            running = await batch([{"type": "sleep", "payload": SLEEP_S} for _ in range(10)])
            for i in range(20):
                answer = await client.post(
                    "/api/schedules",
                    json={"name": f"s{i}", "cron": "0 3 * * *", "task": {"type": "noop", "payload": {"i": i}}},
                )
                answer.raise_for_status()
            (await client.put("/api/queues/held", json={})).raise_for_status()
            (await client.post("/api/queues/held/pause")).raise_for_status()
            await batch([{"type": "noop", "queue": "held"} for _ in range(n)])

            async def settled() -> bool:
                done = await _count(redis, keys, "completed") >= 2 * n + retrying
                failed = await _count(redis, keys, "failed") >= n
                busy = await _count(redis, keys, "processing") >= len(running)
                return done and failed and busy

            await until(settled, *stack.services, what="the tasks and webhooks settled", timeout=120 + n / 20)
            for task_id in running:  # cancelled while running: a request on the cancels stream each
                assert (await client.post(f"/api/tasks/{task_id}/cancel")).status_code == 202

            async def cancelled() -> bool:
                return await _count(redis, keys, "cancelled") >= n // 2 + len(running)

            await until(cancelled, *stack.services, what="the running tasks cancelled", timeout=60)

            async def delivered() -> bool:  # every webhook attempted once; those to /down wait for a retry
                logs = [k async for k in redis.scan_iter(match=f"{keys.deliveries('')}*", count=1000)]
                return len(logs) >= n + retrying and int(await redis.zcard(keys.webhooks_due)) == retrying

            await until(delivered, *stack.services, what="the webhooks delivered", timeout=60 + n / 20)

            async def sampled() -> bool:
                return int(await redis.xlen(keys.history)) >= 20

            await until(sampled, *stack.services, what="dashboard history samples", timeout=60)

    # the dashboard's login records, by their own classes: 10 sessions, 10 failed-login counters
    settings = Settings(redis_url="redis://unused", key_prefix=stack.prefix)
    sessions = SessionStore(redis, keys, settings.dashboard_session_ttl_s)
    throttle = LoginThrottle(redis, keys)
    key = ApiKey("bench", frozenset({Scope.READ}), digest(secret))
    for i in range(10):
        await sessions.create(key, secret)
        await throttle.attempt(f"10.0.0.{i}", f"wrong-{i}")


def page(rows: dict[str, dict[str, Any]], unknown: list[str], n: int, redis_version: str, took_s: float) -> str:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    bounds = _bounds(settings)
    m = machine()
    lines = [
        "# Redis stores",
        "",
        "<!-- generated by `python -m bench.stores --write docs/redis-stores.md`: edit bench/stores.py -->",
        "",
        "Every key streamq writes to Redis, what it holds, what bounds it, and its measured size. Finished",
        "tasks and dead letters are bounded by the queue's retention (age and count), the events, cancels",
        "and history streams by their caps, unfinished tasks by the work itself, the rest by a TTL or by what",
        "users create (queues, schedules, task types). A task's webhook records go with the task, so the",
        "retention bounds them too; idempotency keys are bounded by time only, so what they hold grows with",
        "the rate (below the table).",
        "",
        "Bytes are `MEMORY USAGE <key> SAMPLES 0` on a real Redis after the services ran real tasks:",
        f"{n:,} each completed (with idempotency keys), failed (one dead letter each), completed with a",
        f"webhook (delivered to a receiver; {n // 10:,} more refused and waiting for their retry), scheduled",
        "a day ahead (half of them cancelled), and pending on a paused queue; 10 cancelled while running,",
        "20 schedules, the dashboard sampling its history, 10 dashboard logins and 10 failed ones. Bytes per",
        "entry = the family's bytes / its entries (`entry` says what one is), so a collection's fixed",
        "overhead is spread over what it held here: small collections (a few entries) are mostly overhead.",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on Redis {redis_version}, {m['cpu']}, Python {m['python']}",
        f"(the run took {took_s:.0f} s). `<p>` is `STREAMQ_KEY_PREFIX`, `{{<q>}}` the queue's hash tag",
        "(`{<q>:<k>}` for partition k >= 1).",
        "",
        "| key | type | holds | bounded by | keys | entries (entry) | bytes per entry |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for family in FAMILIES:
        row = rows.get(family.name)
        if row is None:
            lines.append(f"| `{family.template}` | | {family.holds} | {bounds[family.name]} | 0 | | not written here |")
            continue
        per = row["bytes"] / max(row["entries"], 1)
        lines.append(
            f"| `{family.template}` | {row['type']} | {family.holds} | {bounds[family.name]} | {row['keys']:,} | "
            f"{row['entries']:,} ({family.entry}) | {per:,.0f} |"
        )
    per_task = _per_finished_task(rows)
    lines += [
        "",
        *_at_defaults(rows, settings),
        f"A finished task with no webhook costs about **{per_task:,.0f} bytes** here: its hash, its members",
        "of the status, type and retention indexes, and its share of the events stream (one `submitted`,",
        "`started` and `completed` event each, up to the events cap). A webhook adds its delivery hash and",
        "its attempt log; an idempotency key its string; a failed task its dead letter.",
        *_time_bound(rows, settings),
        "",
        "Regenerate: `.venv/bin/python -m bench.stores --write docs/redis-stores.md` (about a minute;",
        "`--n` sets the tasks per kind).",
    ]
    if unknown:
        lines += ["", "Keys no family above matched (a new store: add it to bench/stores.py):", ""]
        lines += [f"- `{k}`" for k in unknown[:20]]
    return "\n".join(lines) + "\n"


RATE_EXAMPLE = 100  # tasks/s of the worked example of the time-bounded stores


def _per_key(rows: dict[str, dict[str, Any]], name: str) -> float:
    row = rows.get(name)
    return row["bytes"] / max(row["keys"], 1) if row else 0.0


def _time_bound(rows: dict[str, dict[str, Any]], s: Settings) -> list[str]:
    """What the stores bounded only by a TTL (not by the queue's retention counts) hold at a steady rate."""
    idem = _per_key(rows, "idem") * RATE_EXAMPLE * s.idempotency_ttl_s
    return [
        "",
        f"Bounded by time only: an idempotency key stays `STREAMQ_IDEMPOTENCY_TTL_S` ({_days(s.idempotency_ttl_s)}).",
        f"At a steady {RATE_EXAMPLE} tasks/s that is about {idem / 1e9:,.1f} GB of idempotency keys when every",
        "task has one (at these sizes, scaling with the rate); lower `STREAMQ_IDEMPOTENCY_TTL_S` where that",
        "matters.",
    ]


def _at_defaults(rows: dict[str, dict[str, Any]], s: Settings) -> list[str]:
    """The most one queue keeps of finished work at the default bounds, at the measured sizes."""
    dead = rows.get("dead")
    events = rows.get("events")
    per_dead = dead["bytes"] / max(dead["entries"], 1) if dead else 0.0
    per_event = events["bytes"] / max(events["entries"], 1) if events else 0.0
    tasks = s.retention_completed_count + s.retention_failed_count + s.retention_cancelled_count
    total = (
        tasks * _per_finished_task(rows, events=0)
        + s.retention_dead_letter_count * per_dead
        + s.events_maxlen * per_event
    )
    hooks = tasks * (_per_key(rows, "webhook") + _per_key(rows, "deliveries"))
    return [
        f"At the default bounds a queue keeps at most {tasks:,} finished tasks, "
        f"{s.retention_dead_letter_count:,} dead letters and",
        f"{s.events_maxlen:,} events: about **{total / 1e6:,.0f} MB** at these sizes, whatever its rate "
        "(a partitioned queue: each",
        "partition keeps its share of the counts). The age bounds make a quiet queue keep less. A task's",
        "webhook records (its messages that have ended and its attempt log) are removed with it: when every",
        f"task has a webhook delivered at its first attempt they add about **{hooks / 1e6:,.0f} MB** at the same",
        "bounds, plus the messages still due (those the receivers refuse, until their retries end).",
        "",
    ]


def _per_finished_task(rows: dict[str, dict[str, Any]], events: int = 3) -> float:
    """Bytes of one finished task: hash + index members (status, type, retention) + its ``events``
    (submitted, started, completed) while the events stream holds them."""

    def per(name: str) -> float:
        row = rows.get(name)
        return row["bytes"] / max(row["entries"], 1) if row else 0.0

    return per("task") + per("idx_status") + per("idx_type") + per("retention") + events * per("events")


async def run(n: int) -> tuple[dict[str, dict[str, Any]], list[str], str, float]:
    server = RedisServer()
    log_dir = Path(tempfile.mkdtemp(prefix="streamq-stores-logs-"))
    stack = Stack(server, log_dir)
    redis = server.client()
    started = time.monotonic()
    try:
        await populate(stack, redis, n, lambda text: print(f"stores: {text}", file=sys.stderr, flush=True))
        rows, unknown = await measure(redis, stack.prefix)
        version = str((await redis.info("server"))["redis_version"])
    except BaseException:
        print(f"stores: failed; service logs kept in {log_dir}", file=sys.stderr)
        raise
    finally:
        stack.stop()
        await redis.aclose()
        server.close()
    shutil.rmtree(log_dir, ignore_errors=True)
    return rows, unknown, version, time.monotonic() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stores", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2_000, help="tasks of each kind (default 2,000)")
    parser.add_argument("--write", help="write the page here (docs/redis-stores.md) instead of printing it")
    args = parser.parse_args(argv)
    rows, unknown, version, took = asyncio.run(run(args.n))
    text = page(rows, unknown, args.n, version, took)
    if args.write:
        Path(args.write).write_text(text)
        print(f"written {args.write}", file=sys.stderr)
    else:
        print(text)


if __name__ == "__main__":
    main()
