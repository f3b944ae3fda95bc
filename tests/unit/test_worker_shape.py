"""The consumer alone owns the worker's slots: the finisher and the watchers do not import it (the
finisher sends through a Sender, the watchers ask a SlotOwner), so neither decides when to take or
how much."""

from __future__ import annotations

import ast
import inspect
from types import ModuleType

import pytest

from streamq.services.worker import consumer, finisher, intake, watchers


def _imported(module: ModuleType) -> set[str]:
    tree = ast.parse(inspect.getsource(module))
    return {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}


@pytest.mark.parametrize("module", [finisher, watchers, intake], ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_only_the_consumer_knows_the_consumer(module: ModuleType) -> None:
    assert consumer.__name__ not in _imported(module)
