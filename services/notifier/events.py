"""Handling lifecycle events for the notifier: each terminal event of a task with a webhook becomes
a delivery (created and acknowledged in one script call); every other event is acknowledged.
Creating is idempotent (the delivery id comes from the entry id), so an event read twice after a
crash still makes one webhook message."""

from __future__ import annotations

import logging
import random
from typing import Any

from redis.asyncio import Redis

from streamq.shared import webhooks
from streamq.shared.deliveries import Deliveries, delivery_id_for, task_data
from streamq.shared.keys import NOTIFIER_GROUP, KeySchema
from streamq.shared.queue import decode_task
from streamq.shared.workflows import WORKFLOW_ENDS, workflow_body, workflow_data

log = logging.getLogger("streamq.notifier")
Entry = tuple[str, dict[str, str] | None]


def entry_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


class EventHandler:
    """Turns a batch of event entries into deliveries and acknowledgements."""

    def __init__(self, redis: Redis, keys: KeySchema, deliveries: Deliveries, first_delay_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.deliveries = deliveries
        self.first_delay_s = first_delay_s
        self.trimmed = 0  # pending entries whose payload was trimmed away before they were handled

    async def handle(self, entries: list[Entry]) -> int:
        """Returns how many deliveries were created."""
        ack: list[str] = []
        wanted: list[tuple[str, dict[str, str]]] = []
        flows: list[tuple[str, dict[str, str]]] = []  # workflow.completed|failed|cancelled
        for entry_id, fields in entries:
            if not fields:
                self.trimmed += 1
                log.warning("event trimmed from the stream before it was handled", extra={"entry": entry_id})
                ack.append(entry_id)
            elif fields.get("event") in webhooks.TERMINAL_EVENTS and fields.get("task"):
                wanted.append((entry_id, fields))
            elif fields.get("event") in WORKFLOW_ENDS and fields.get("task"):
                flows.append((entry_id, fields))
            else:
                ack.append(entry_id)
        created = 0
        if wanted:
            pipe = self.redis.pipeline(transaction=False)
            for _entry_id, fields in wanted:
                pipe.hgetall(self.keys.task(fields["task"]))
            raws: list[dict[str, str]] = await pipe.execute()
            for (entry_id, fields), raw in zip(wanted, raws, strict=True):
                if raw and raw.get("webhook"):
                    created += await self._create(entry_id, fields["event"], fields["task"], raw)
                else:
                    ack.append(entry_id)
        for entry_id, fields in flows:
            made = await self._create_for_workflow(entry_id, fields["event"], fields["task"])
            created += made
            if not made:
                ack.append(entry_id)
        if ack:
            await self.redis.xack(self.keys.events, NOTIFIER_GROUP, *ack)
        return created

    async def _create_for_workflow(self, entry_id: str, event: str, workflow_id: str) -> int:
        """A workflow's end sent to its webhook (docs/workflows.md), signed and retried like a task's; 0
        when it has no webhook (or is gone)."""
        raw: dict[str, str] = await self.redis.hgetall(self.keys.workflow(workflow_id))
        if not raw or not raw.get("webhook"):
            return 0
        body = workflow_body(event, workflow_data(workflow_id, self.keys.queue, raw), entry_ms(entry_id))
        return await self._deliver(entry_id, event, workflow_id, raw["webhook"], body)

    async def _create(self, entry_id: str, event: str, task_id: str, raw: dict[str, Any]) -> int:
        task = decode_task(raw, task_id, self.keys.queue)
        body = webhooks.body(event, task_data(task), entry_ms(entry_id))
        return await self._deliver(entry_id, event, task.id, raw["webhook"], body)

    async def _deliver(self, entry_id: str, event: str, subject_id: str, url: str, body: bytes) -> int:
        """One event's webhook message (a task's or a workflow's), first tried after a jittered delay; 1
        when made, 0 when it already existed."""
        delay_ms = int(self.first_delay_s * random.uniform(1 - webhooks.JITTER, 1 + webhooks.JITTER) * 1000)
        created = await self.deliveries.create(
            mode="event",
            delivery_id=delivery_id_for(entry_id),
            task_id=subject_id,
            event=event,
            url=url,
            body=body,
            delay_ms=delay_ms,
            entry_id=entry_id,
        )
        return int(created)
