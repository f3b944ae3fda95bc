"""Running the scheduler in-process for integration tests."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from streamq.services.scheduler.main import Scheduler
from streamq.shared.settings import Settings
from tests.integration.helpers import running


def running_scheduler(settings: Settings) -> AbstractAsyncContextManager[Scheduler]:
    return running(Scheduler(settings), stop_timeout=15)


def entry_ms(entry_id: str) -> int:
    return int(entry_id.split("-")[0])
