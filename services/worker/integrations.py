"""The built-in task types that talk to the outside (``email``, ``http``): importing this module
registers them; :func:`configure` hands them the worker's settings at start."""

from __future__ import annotations

from streamq.services.worker import handlers_email, handlers_http
from streamq.shared.settings import Settings


def configure(settings: Settings) -> None:
    handlers_email.configure(settings)
    handlers_http.configure(settings)
