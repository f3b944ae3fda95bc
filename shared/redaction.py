"""What reads show of a task's payload: the values of an ``http`` task's ``secret_headers`` are
masked. The worker reads the stored payload as submitted; every public form of a task (``TaskPublic``,
the submit responses, a schedule's template) goes through :func:`redact_payload`.

No imports from the rest of ``shared``: the models use it.
"""

from __future__ import annotations

from typing import Any

SECRET_HEADERS = "secret_headers"
MASK = "***"


def redact_payload(task_type: str, payload: Any) -> Any:
    """``payload`` as reads show it: an ``http`` task's ``secret_headers`` with each value masked (the
    names kept), or masked whole when it is not an object; any other payload as it is."""
    if task_type != "http" or not isinstance(payload, dict) or SECRET_HEADERS not in payload:
        return payload
    secret = payload[SECRET_HEADERS]
    masked = dict.fromkeys(secret, MASK) if isinstance(secret, dict) else MASK
    return {**payload, SECRET_HEADERS: masked}
