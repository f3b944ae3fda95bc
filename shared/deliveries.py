"""Webhook deliveries in Redis: create (from an event or a redeliver request), lease due attempts,
record attempts, read a task's delivery log. Each state change is one script call.

A delivery is one webhook message (one ``webhook-id``). Its next attempt is a due time in the
``webhooks:due`` zset, never a sleep in memory, so a notifier restart loses no retry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from streamq.shared.keys import NOTIFIER_GROUP, KeySchema
from streamq.shared.models import TaskPublic
from streamq.shared.scripts import Scripts
from streamq.shared.webhooks import WebhookStatus

LOG_CAP = 100  # attempts kept per task


@dataclass(frozen=True, slots=True)
class Claimed:
    """One attempt a notifier has leased and must send."""

    delivery_id: str
    attempt: int  # counts every attempt of this message (fencing token)
    round: int  # attempt number in the current series (the schedule index)
    task_id: str
    event: str
    url: str
    body: bytes


def delivery_id_for(entry_id: str) -> str:
    """The message id (``webhook-id``) of a terminal event: stable, derived from its entry id."""
    return f"msg_{entry_id}"


def task_data(task: TaskPublic) -> dict[str, Any]:
    return task.model_dump(mode="json")


class Deliveries:
    def __init__(self, scripts: Scripts, keys: KeySchema, *, events_maxlen: int, keep_ms: int) -> None:
        self.scripts = scripts
        self.keys = keys
        self.events_maxlen = events_maxlen
        self.keep_ms = keep_ms
        self._common = keys.common()

    async def create(
        self,
        *,
        mode: str,
        delivery_id: str,
        task_id: str,
        event: str,
        url: str,
        body: bytes,
        delay_ms: int = 0,
        entry_id: str = "",
    ) -> bool:
        """Create (or, for ``redeliver``, restart) a delivery; True when a new one was created."""
        keys = [*self._common, self.keys.webhook(delivery_id), self.keys.webhooks_due, self.keys.task(task_id)]
        args = [self.events_maxlen, mode, delivery_id, task_id, event, url, body, delay_ms, NOTIFIER_GROUP, entry_id]
        created, _due = await self.scripts.call("webhook_enqueue", keys, args)
        return bool(int(created))

    async def claim(self, delivery_ids: list[str], lease_ms: int) -> list[Claimed]:
        if not delivery_ids:
            return []
        keys = [*self._common, self.keys.webhooks_due, *(self.keys.webhook(d) for d in delivery_ids)]
        reply = await self.scripts.call("webhook_claim", keys, [self.events_maxlen, lease_ms, *delivery_ids])
        return [
            Claimed(str(r[0]), int(r[1]), int(r[2]), str(r[3]), str(r[4]), str(r[5]), str(r[6]).encode()) for r in reply
        ]

    async def record(
        self,
        claimed: Claimed,
        status: WebhookStatus,
        *,
        delay_ms: int,
        entry: dict[str, Any],
        error: str,
    ) -> str:
        keys = [
            *self._common,
            self.keys.webhooks_due,
            self.keys.webhook(claimed.delivery_id),
            self.keys.task(claimed.task_id),
            self.keys.deliveries(claimed.task_id),
        ]
        args = [
            self.events_maxlen,
            claimed.delivery_id,
            claimed.attempt,
            status.value,
            delay_ms,
            orjson.dumps(entry).decode(),
            LOG_CAP,
            self.keep_ms,
            error,
        ]
        return str(await self.scripts.call("webhook_record", keys, args))

    async def log(self, redis: Any, task_id: str) -> list[dict[str, Any]]:
        return [orjson.loads(item) for item in await redis.lrange(self.keys.deliveries(task_id), 0, -1)]
