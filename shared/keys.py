"""The Redis key schema: the ONLY place a key string is built.

Every key of one queue carries the queue as a hash tag (``<prefix>:{<queue>}:...``), so each
multi-key script or transaction touches a single hash slot and also runs on Redis Cluster.
Keys that are not part of any script (worker registry, known task types) live outside the tag.

==========================================  ======  ===================================================
key                                         type    what it holds
==========================================  ======  ===================================================
<p>:{<q>}:stream:<priority>                 stream  one entry per runnable task (field ``id``), 1..5
<p>:{<q>}:task:<id>                         hash    the task itself (fields of TaskPublic, JSON values; id and queue
                                                    are its key's, attempts absent until the first start)
<p>:{<q>}:idx:status:<status>               zset    ids per status, score 0, ordered by id (time); each task
                                                    is in one: their union is every task (no index of all)
<p>:{<q>}:idx:type:<type>                   zset    ids per task type, score 0, ordered by id
<p>:{<q>}:scheduled                         zset    scheduled ids, score = due time (ms)
<p>:{<q>}:wakeups                           stream  one entry per script call that scheduled a task or held a group
                                                    (capped at about 100): what the scheduler's watcher blocks on
<p>:{<q>}:retention                         zset    finished ids, score = time they expire (ms)
<p>:{<q>}:dead                              stream  dead letters (field ``id``, ``error``)
<p>:{<q>}:events                            stream  lifecycle events, capped
<p>:{<q>}:stats                             hash    lifetime counters
<p>:{<q>}:idem:<key>                        string  task id of an idempotency key (TTL 24 h)
<p>:{<q>}:unique:<key>                      string  task id holding a unique key (TTL: its ttl_s; released by the
                                                    script that starts or ends the holder)
<p>:{<q>}:debounce:<type>|<key>             string  task id of a debounce key's waiting task (TTL: window + 24 h;
                                                    released by the script that starts or cancels it)
<p>:{<q>}:webhooks:due                      zset    webhook delivery ids, score = when the next attempt is due (ms)
<p>:{<q>}:webhook:<delivery id>             hash    one webhook message: task, event, url, body, attempts, status
<p>:{<q>}:deliveries:<task id>              list    the task's delivery attempts (JSON), newest last, capped
<p>:{<q>}:schedule:<name>                   hash    one periodic schedule (cron, timezone, task template)
<p>:{<q>}:schedules                         zset    every schedule name, score 0 (lexical order)
<p>:{<q>}:schedules:due                     zset    active schedule names, score = next tick (ms)
<p>:types                                   set     task types any worker has advertised
<p>:workers                                 zset    worker ids, score = last heartbeat (ms)
<p>:worker:<id>                             hash    one worker's registration (TTL)
<p>:ratelimit:<client>                      hash    token bucket of an api key or address (TTL)
<p>:services                                zset    service instance ids, score = last heartbeat (ms)
<p>:service:<id>                            hash    one service instance's registration (TTL)
<p>:{<q>}:history                           stream  dashboard metric samples (field ``s``, JSON), ~24 h
<p>:{<q>}:history:lock                      string  id of the dashboard process that writes samples (TTL)
<p>:dashsession:<sha256 of session id>      hash    one dashboard login: key name, scopes, CSRF token, sealed key (TTL)
<p>:queues                                  hash    queue name -> its config (JSON: partitions, paused, retention)
<p>:{<q>}:paused                            string  present while the queue is paused (one per partition)
<p>:schema                                  hash    the layout's version (``version``) and a running migration's
                                                    progress (``done:<version>:<tag>``); see shared/schema.py
<p>:{<q>}:cancels                           stream  cancel requests of running tasks (``id``, ``msg``, ``type``),
                                                    capped; polled by the workers that run the partition's tasks
<p>:{<q>}:wf:<id>                           hash    one workflow: name, status, steps ({name: task id}), open and
                                                    bad step counts (docs/workflows.md); removed with its steps
                                                    STREAMQ_RESULT_TTL_S after it ended (wf:retention)
<p>:{<q>}:wf:idx                            zset    every workflow id of the partition, score 0, ordered by id
<p>:{<q>}:wf:idx:<status>                   zset    workflow ids per status (running, completed, failed, cancelled)
<p>:{<q>}:wf:retention                      zset    ended workflow ids, score = time they expire (ms)
<p>:{<q>}:wf:idem:<key>                     string  workflow id of an idempotency key (TTL 24 h)
<p>:{<q>}:idx:status:waiting|skipped        zset    workflow steps waiting on parents / skipped (not in the six
                                                    status indexes)
<p>:{<q>}:gwait:<group>                     zset    a group's tasks waiting on its limits, score (5 - priority)
                                                    * 2^42 + created_at ms (group '' : ungrouped, type-limited)
<p>:{<q>}:grun:<group>                      set     the group's released-and-not-ended task ids (its running count)
<p>:{<q>}:grate:<group>                     zset    the group's last starts in its rate's window (id, ms; expires)
<p>:{<q>}:trun:<type> / trate:<type>        set/str the same per limited task type
<p>:{<q>}:tblocked:<type>                   set     groups waiting on the type's concurrency
<p>:{<q>}:groups:ready                      zset    groups that may release a task, score priority band, turn
<p>:{<q>}:groups:wake                       zset    groups held by a rate, score = when it allows the next start (ms)
<p>:{<q>}:groups:recheck                    zset    groups held by a concurrency, score = when to look again anyway
<p>:{<q>}:groups:released                   set     released grouped task ids not started yet (the window)
<p>:{<q>}:groups:backlog                    hash    waiting tasks per group
<p>:{<q>}:groups:waiting                    string  waiting tasks of every group (the backlog's sum)
<p>:{<q>}:groups:seq                        string  the round-robin turn counter
<p>:{<q>}:limits:groups                     hash    group -> "concurrency|limit|per_ms", ``*`` -> queue default
<p>:{<q>}:limits:types                      hash    task type -> "concurrency|limit|per_ms"
==========================================  ======  ===================================================

Partitions: partition 0 of queue ``q`` uses the tag ``{q}`` (so a one-partition queue keeps the keys it
always had); partition ``k >= 1`` uses ``{q:k}``, a different hash slot, so a busy queue spreads over
several Redis Cluster nodes. Queue names cannot contain ``:``, so tags never collide.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamq.shared.models import MAX_PRIORITY, MIN_PRIORITY, PRIORITIES, TaskStatus

WORKER_GROUP = "workers"
NOTIFIER_GROUP = "notifier"  # the notifier's consumer group on the events stream
STATUS_ORDER = (
    TaskStatus.PENDING,
    TaskStatus.SCHEDULED,
    TaskStatus.PROCESSING,
    TaskStatus.COMPLETED,
    TaskStatus.FAILED,
    TaskStatus.CANCELLED,
)


@dataclass(frozen=True, slots=True)
class KeySchema:
    prefix: str = "streamq"
    queue: str = "default"
    partition: int = 0
    # "<prefix>:{<tag>}", made once: a 1,000-task submit names 3,000 keys (was two properties and a
    # format per key)
    _base: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_base", f"{self.prefix}:{{{self.tag}}}")

    @property
    def tag(self) -> str:
        """The hash tag's content: ``q`` for partition 0, ``q:k`` for partition k."""
        return self.queue if self.partition == 0 else f"{self.queue}:{self.partition}"

    @property
    def _q(self) -> str:
        return self._base

    def of_partition(self, partition: int) -> KeySchema:
        """The same queue's keys in another partition."""
        return KeySchema(self.prefix, self.queue, partition)

    def partitions(self, count: int) -> list[KeySchema]:
        """Keys of partitions ``0 .. count-1``."""
        return [self.of_partition(k) for k in range(count)]

    def for_queue(self, queue: str, partition: int = 0) -> KeySchema:
        """Keys of another queue under the same prefix."""
        return KeySchema(self.prefix, queue, partition)

    # --- per queue (one hash slot) -------------------------------------------------------------
    def stream(self, priority: int) -> str:
        return f"{self._q}:stream:{priority}"

    def streams(self) -> list[str]:
        """Priority streams, highest priority first."""
        return [self.stream(p) for p in PRIORITIES]

    def task(self, task_id: str) -> str:
        return f"{self._q}:task:{task_id}"

    def index_status(self, status: TaskStatus | str) -> str:
        return f"{self._q}:idx:status:{TaskStatus(status).value}"

    def status_indexes(self) -> list[str]:
        """Every status index, in ``lua/lib.lua``'s order: each task is in exactly one (there is no
        index of all tasks; their union is)."""
        return [self.index_status(s) for s in STATUS_ORDER]

    def index_type(self, task_type: str) -> str:
        return f"{self._q}:idx:type:{task_type}"

    @property
    def scheduled(self) -> str:
        return f"{self._q}:scheduled"

    @property
    def wakeups(self) -> str:
        """The scheduler's wake-ups (lua/lib.lua wake_scheduler builds the same name from ``scheduled``)."""
        return f"{self._q}:wakeups"

    @property
    def retention(self) -> str:
        return f"{self._q}:retention"

    @property
    def dead(self) -> str:
        return f"{self._q}:dead"

    @property
    def events(self) -> str:
        return f"{self._q}:events"

    @property
    def stats(self) -> str:
        return f"{self._q}:stats"

    def idempotency(self, key: str) -> str:
        return f"{self._q}:idem:{key}"

    # --- unique tasks and debounce (docs/unique-and-debounce.md) ---------------------------------
    def unique(self, key: str) -> str:
        """The task id holding a unique key in this partition (the api places a task by its key)."""
        return f"{self._q}:unique:{key}"

    def debounce(self, task_type: str, key: str) -> str:
        """The waiting task of a debounce key; per type (a type has no ``|``, so the name is unambiguous)."""
        return f"{self._q}:debounce:{task_type}|{key}"

    @property
    def webhooks_due(self) -> str:
        return f"{self._q}:webhooks:due"

    def webhook(self, delivery_id: str) -> str:
        return f"{self._q}:webhook:{delivery_id}"

    def deliveries(self, task_id: str) -> str:
        return f"{self._q}:deliveries:{task_id}"

    def schedule(self, name: str) -> str:
        return f"{self._q}:schedule:{name}"

    @property
    def schedules(self) -> str:
        return f"{self._q}:schedules"

    @property
    def schedules_due(self) -> str:
        return f"{self._q}:schedules:due"

    @property
    def paused(self) -> str:
        """Present while the queue is paused: take.lua reads nothing from a partition that has it."""
        return f"{self._q}:paused"

    @property
    def cancels(self) -> str:
        """Cancel requests of running tasks (cancel.lua adds, workers poll): a capped stream."""
        return f"{self._q}:cancels"

    # --- workflows (docs/workflows.md; every key in the partition's slot, built by the Lua from `base`) --
    @property
    def base(self) -> str:
        """``<prefix>:{<tag>}:``: the workflow scripts build their keys from it (lua/lib.lua wf_base)."""
        return f"{self._q}:"

    def workflow(self, workflow_id: str) -> str:
        return f"{self._q}:wf:{workflow_id}"

    def workflow_index(self, status: str | None = None) -> str:
        """Workflow ids of the partition (all, or those in ``status``), ordered by id."""
        return f"{self._q}:wf:idx" if status is None else f"{self._q}:wf:idx:{status}"

    @property
    def workflow_retention(self) -> str:
        return f"{self._q}:wf:retention"

    def workflow_idempotency(self, key: str) -> str:
        return f"{self._q}:wf:idem:{key}"

    # --- groups and type limits (docs/groups-and-limits.md; lib.lua builds the same names) ------
    def group_waiting(self, group: str) -> str:
        return f"{self._q}:gwait:{group}"

    def group_running(self, group: str) -> str:
        return f"{self._q}:grun:{group}"

    def type_running(self, task_type: str) -> str:
        return f"{self._q}:trun:{task_type}"

    @property
    def groups_wake(self) -> str:
        return f"{self._q}:groups:wake"

    @property
    def groups_recheck(self) -> str:
        return f"{self._q}:groups:recheck"

    @property
    def groups_backlog(self) -> str:
        return f"{self._q}:groups:backlog"

    @property
    def groups_waiting(self) -> str:
        return f"{self._q}:groups:waiting"

    @property
    def groups_released(self) -> str:
        return f"{self._q}:groups:released"

    @property
    def limits_groups(self) -> str:
        return f"{self._q}:limits:groups"

    @property
    def limits_types(self) -> str:
        return f"{self._q}:limits:types"

    def common(self) -> list[str]:
        """The first 16 KEYS of every state-change script, in the order ``lua/lib.lua`` expects."""
        return [
            *self.status_indexes(),
            self.events,
            self.stats,
            self.retention,
            self.scheduled,
            self.dead,
            *(self.stream(p) for p in range(MIN_PRIORITY, MAX_PRIORITY + 1)),
        ]

    # --- global ---------------------------------------------------------------------------------
    @property
    def queues(self) -> str:
        """Every known queue's config (hash: name -> JSON)."""
        return f"{self.prefix}:queues"

    @property
    def types(self) -> str:
        return f"{self.prefix}:types"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    def rate_limit(self, client: str) -> str:
        """Token bucket of one api key (or client address), shared by every api replica."""
        return f"{self.prefix}:ratelimit:{client}"

    # --- service registry and dashboard (appended for the observability issue) --------------------
    @property
    def services(self) -> str:
        return f"{self.prefix}:services"

    def service(self, service_id: str) -> str:
        return f"{self.prefix}:service:{service_id}"

    @property
    def history(self) -> str:
        return f"{self._q}:history"

    @property
    def history_lock(self) -> str:
        return f"{self._q}:history:lock"

    def dashboard_session(self, session_hash: str) -> str:
        """One dashboard login, named by the SHA-256 of its session id (the id itself is only in the cookie)."""
        return f"{self.prefix}:dashsession:{session_hash}"

    @property
    def schema(self) -> str:
        """The deployment's layout version and a running migration's progress (shared/schema.py)."""
        return f"{self.prefix}:schema"

    @property
    def legacy_index_all(self) -> str:
        """The index of all tasks that builds before 4494f02 kept; only schema migration 1 names it (to drop it)."""
        return f"{self._q}:idx:all"

    def dashboard_login(self, counter: str) -> str:
        """Login attempts of one client address or key prefix (``addr:...``, ``key:<sha256>``), expiring."""
        return f"{self.prefix}:dashlogin:{counter}"


if __name__ == "__main__":  # `python -m streamq.shared.keys new NAME --scopes ...` (API keys; see shared/auth.py)
    import sys

    from streamq.shared.auth import cli

    sys.exit(cli())
