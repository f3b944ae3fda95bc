"""The worker's round order over queues and partitions (services/worker/sources.py)."""

from __future__ import annotations

import random
from collections import Counter

from streamq.services.worker.sources import Sources
from streamq.shared.keys import KeySchema

KEYS = KeySchema("p", "default")


def test_weighted_order_puts_each_queue_first_by_its_weight() -> None:
    sources = Sources(KEYS, {"critical": 6, "default": 3, "bulk": 1}, rng=random.Random(1))
    firsts = Counter(sources.queue_order()[0] for _ in range(10_000))
    assert abs(firsts["critical"] - 6000) < 300 and abs(firsts["default"] - 3000) < 300
    assert abs(firsts["bulk"] - 1000) < 200
    assert all(sorted(sources.queue_order()) == ["bulk", "critical", "default"] for _ in range(100))  # each once


def test_strict_order_is_the_listed_one() -> None:
    sources = Sources(KEYS, {"b": 1, "a": 9}, strict=True)
    assert {tuple(sources.queue_order()) for _ in range(50)} == {("b", "a")}


def test_partitions_rotate_each_round() -> None:
    sources = Sources(KEYS, {"wide": 1})
    sources.parts["wide"] = KEYS.for_queue("wide").partitions(3)
    rounds = [[p.partition for p in sources.order()] for _ in range(4)]
    assert rounds == [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]
    assert [p.tag for p in sources.all()] == ["wide", "wide:1", "wide:2"]


def test_single_keeps_the_given_keys() -> None:
    sources = Sources.single(KEYS)
    assert sources.order() == [KEYS] and sources.queues == ["default"]
