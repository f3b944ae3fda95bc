"""The Redis layout's version, and the migrations that bring an older layout up to it.

Redis holds one version per deployment (``<prefix>:schema``, field ``version``). Every service checks it
at start (:func:`at_start`):

- absent on a Redis with no streamq data: a fresh deployment, stamped with :data:`CURRENT`;
- absent on a Redis with streamq data: version 0 (the layouts before versions were recorded);
- older than :data:`CURRENT`: the api (``STREAMQ_AUTO_MIGRATE=true``, the default) and ``streamq migrate``
  run the missing migrations; the other services start at once when every missing migration is one this
  build can run without (``blocking=False``: a clean-up), else wait until it is done (readiness: starting);
- newer: the service stops with one line on stderr and exit code 2 (this build does not know the layout).

A migration is a step run once per queue partition, touching only that partition's keys (one hash slot,
so it runs on Redis Cluster), idempotent (a step run twice changes nothing more), and recorded per
partition (``done:<version>:<tag>``) so a migrator that crashed half way resumes where it stopped. When
every partition is done, ``schema_advance.lua`` moves the version forward (never back) and drops the
progress fields. ``rolling`` says whether processes of the previous build may keep running meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from streamq.shared.keys import STATUS_ORDER, KeySchema
from streamq.shared.queues import QueueRegistry
from streamq.shared.redis import connect
from streamq.shared.scripts import Scripts
from streamq.shared.settings import Settings

log = logging.getLogger("streamq.schema")

WAIT_POLL_S = 1.0  # how often a service waiting for a migration reads the version again
TOO_NEW_EXIT = 2


@dataclass(frozen=True, slots=True)
class Migration:
    version: int  # the version Redis holds once it ran on every partition
    summary: str
    rolling: bool  # processes of the previous build may keep running while and after it runs
    blocking: bool  # this build cannot serve the layout before it: services that do not migrate wait for it
    step: Callable[[Redis, KeySchema], Awaitable[None]]  # one partition; idempotent; its keys only


async def _drop_index_all(redis: Redis, part: KeySchema) -> None:
    # UNLINK frees a large index in Redis's background thread instead of blocking the server
    await redis.unlink(part.legacy_index_all)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "drop the index of all tasks (idx:all) that builds before 4494f02 kept; their task hashes read as before",
        rolling=False,  # those builds' scripts take another KEYS layout and still write idx:all
        blocking=False,  # this build neither reads nor writes idx:all: it only frees the memory
        step=_drop_index_all,
    ),
)
CURRENT = MIGRATIONS[-1].version


class SchemaTooNew(Exception):
    def __init__(self, found: int) -> None:
        super().__init__(f"Redis holds schema {found}, this streamq knows up to {CURRENT}: upgrade streamq")
        self.found = found


def _progress_field(version: int, part: KeySchema) -> str:
    return f"done:{version}:{part.tag}"


async def read_version(redis: Redis, keys: KeySchema) -> int | None:
    """The stored version, or None when none is stored."""
    raw = await redis.hget(keys.schema, "version")
    return None if raw is None else int(raw)


async def _has_data(redis: Redis, keys: KeySchema, queue: str) -> bool:
    """Whether streamq wrote anything under the prefix: a registered queue, or data in the service's own
    queue (the default queue is used without being registered). One EXISTS per partition: one slot each."""
    if await redis.exists(keys.queues):
        return True
    part = keys.for_queue(queue)
    names = [*(part.index_status(s) for s in STATUS_ORDER), part.stats, part.dead, part.schedules, part.scheduled]
    return bool(await redis.exists(*names))


async def current_version(redis: Redis, keys: KeySchema, queue: str) -> int:
    """The deployment's version; a fresh Redis is stamped with :data:`CURRENT` first."""
    found = await read_version(redis, keys)
    if found is not None:
        return found
    if await _has_data(redis, keys, queue):
        return 0
    await redis.hsetnx(keys.schema, "version", CURRENT)  # two services stamping at once agree
    return await read_version(redis, keys) or 0


async def migrate(
    redis: Redis, keys: KeySchema, queue: str, migrations: Sequence[Migration] = MIGRATIONS
) -> list[Migration]:
    """Run every migration newer than the stored version, over every partition of every known queue;
    returns those run. Raises :class:`SchemaTooNew` for a layout newer than this build's."""
    found = await current_version(redis, keys, queue)
    if found > CURRENT:
        raise SchemaTooNew(found)
    pending = [m for m in migrations if m.version > found]
    registry = QueueRegistry(redis, keys, cache_s=0)
    scripts = Scripts(redis)
    for migration in pending:
        parts = await registry.all_partitions(queue)
        fields = [_progress_field(migration.version, part) for part in parts]
        done = await redis.hmget(keys.schema, fields)
        for part, progress, was_done in zip(parts, fields, done, strict=True):
            if was_done is None:
                await migration.step(redis, part)
                await redis.hset(keys.schema, progress, "1")  # a crash before this only redoes this step
        await scripts.call("schema_advance", [keys.schema], [migration.version, *fields])
        log.info(
            "schema migrated",
            extra={"version": migration.version, "partitions": len(parts), "rolling": migration.rolling},
        )
    return pending


async def wait_current(
    redis: Redis, keys: KeySchema, queue: str, stop: asyncio.Event, migrations: Sequence[Migration] = MIGRATIONS
) -> bool:
    """Wait until no missing migration blocks this build (True) or ``stop`` is set (False)."""
    latest = migrations[-1].version
    found = await current_version(redis, keys, queue)
    logged = False
    while any(m.blocking and m.version > found for m in migrations):
        if not logged:
            log.warning(
                "waiting for a schema migration: the api migrates at start, or run `streamq migrate`",
                extra={"found": found, "current": latest},
            )
            logged = True
        try:
            await asyncio.wait_for(stop.wait(), WAIT_POLL_S)
            return False
        except TimeoutError:
            found = await current_version(redis, keys, queue)
    if found > latest:
        raise SchemaTooNew(found)
    return True


def refuse(error: SchemaTooNew) -> SystemExit:
    """Print the one line a newer layout gets and give the exit to raise (code 2)."""
    print(f"streamq: {error}", file=sys.stderr, flush=True)
    return SystemExit(TOO_NEW_EXIT)


async def at_start(settings: Settings, stop: asyncio.Event, *, migrate_older: bool) -> bool:
    """A service's start-up check, on a connection of its own: migrate (``migrate_older``) or wait for an
    older layout, stop with exit 2 on a newer one. False when ``stop`` came first."""
    redis = await connect(settings)
    keys = KeySchema(settings.key_prefix, settings.queue)
    try:
        if migrate_older:
            await migrate(redis, keys, settings.queue)
            return True
        return await wait_current(redis, keys, settings.queue, stop)
    except SchemaTooNew as error:
        raise refuse(error) from None
    finally:
        await redis.aclose()


async def command(settings: Settings, *, dry_run: bool = False) -> dict[str, object]:
    """What ``streamq migrate`` does and reports: the version found, the one reached, each migration run
    (or, ``dry_run``, to run) and whether it allows a rolling upgrade. Raises :class:`SchemaTooNew`."""
    redis = await connect(settings)
    keys = KeySchema(settings.key_prefix, settings.queue)
    try:
        found = await current_version(redis, keys, settings.queue)
        if found > CURRENT:
            raise SchemaTooNew(found)
        ran = [m for m in MIGRATIONS if m.version > found] if dry_run else await migrate(redis, keys, settings.queue)
        return {
            "found": found,
            "version": found if dry_run else CURRENT,
            "migrations": [{"version": m.version, "summary": m.summary, "rolling": m.rolling} for m in ran],
        }
    finally:
        await redis.aclose()
