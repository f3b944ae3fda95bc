"""The worker service: reads the priority streams through a consumer group and runs handlers."""

from streamq.services.worker.registry import TaskContext, handler

__all__ = ["TaskContext", "handler"]
