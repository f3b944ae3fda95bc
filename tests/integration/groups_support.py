"""Reading the groups handlers' run log (tests/e2e/handlers_groups.py)."""

from __future__ import annotations

import os


def notes(path: str) -> list[tuple[str, str, str, int]]:
    """Every (kind ``S``/``E``, task id, group, worker pid) line of the log, in the order they were
    written."""
    if not os.path.exists(path):
        return []
    with open(path) as log:
        return [(kind, task, group, int(pid)) for kind, task, group, pid in (line.split() for line in log)]


def most_at_once(path: str, group: str) -> int:
    """The most runs of ``group`` in progress at once. A start of a task already in progress is a rerun
    after its worker died (the dead run ended before it could be reclaimed): it does not add one."""
    running: set[str] = set()
    most = 0
    for kind, task, g, _pid in notes(path):
        if g != group:
            continue
        if kind == "S":
            running.add(task)
        elif kind == "E":
            running.discard(task)
        most = max(most, len(running))
    return most
