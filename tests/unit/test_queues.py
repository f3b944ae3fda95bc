"""Queue configs, weights and partition keys (pure), and the registry against a real Redis."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from streamq.shared.keys import KeySchema
from streamq.shared.queues import QueueConfig, QueueRegistry, parse_weights, partition_of
from streamq.shared.settings import Settings


def test_weights_keep_order_and_default_to_one() -> None:
    assert list(parse_weights("critical:6, default:3,bulk").items()) == [("critical", 6), ("default", 3), ("bulk", 1)]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a:0", "weight of queue 'a' must be an integer from 1 to 1000"),
        ("a:x", "weight of queue 'a'"),
        ("a,a:2", "named twice"),
        ("bad name", "queue name 'bad name'"),
        (" , ", "name at least one queue"),
    ],
)
def test_bad_weights_name_the_part(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_weights(value)


def test_settings_weights_default_to_the_one_queue() -> None:
    assert Settings(queue="mail", _env_file=None).queue_weights() == {"mail": 1}  # type: ignore[call-arg]
    assert Settings(queues="a:2,b", _env_file=None).queue_weights() == {"a": 2, "b": 1}  # type: ignore[call-arg]


def test_partition_zero_keeps_the_plain_tag_and_others_get_their_own_slot() -> None:
    keys = KeySchema("sq", "bulk")
    assert keys.stream(1) == "sq:{bulk}:stream:1"
    parts = keys.partitions(3)
    assert [p.stream(1) for p in parts] == ["sq:{bulk}:stream:1", "sq:{bulk:1}:stream:1", "sq:{bulk:2}:stream:1"]
    for part in parts:  # every key a script gets from one partition is in one slot
        assert len({key_slot(k.encode()) for k in [*part.common(), part.paused, part.task("x")]}) == 1
    assert len({key_slot(p.stream(1).encode()) for p in parts}) == 3


def test_partition_choice_is_stable_and_spreads() -> None:
    assert partition_of("abc", 1) == 0
    assert partition_of("abc", 4) == partition_of("abc", 4)
    spread = [partition_of(f"task-{i}", 4) for i in range(4000)]
    assert all(800 < spread.count(k) < 1200 for k in range(4))


async def test_registry_creates_grows_and_pauses(redis: Redis, keys: KeySchema) -> None:
    registry = QueueRegistry(redis, keys, cache_s=0)
    assert await registry.all() == {"default": QueueConfig("default")}
    assert await registry.ensure("bulk") == QueueConfig("bulk")
    assert await registry.configure("bulk", 3) == QueueConfig("bulk", 3)
    with pytest.raises(ValueError, match="can only grow"):
        await registry.configure("bulk", 2)
    with pytest.raises(ValueError, match="from 1 to 64"):
        await registry.configure("bulk", 65)
    await registry.set_paused("bulk", True)
    flags = [await redis.get(p.paused) for p in keys.for_queue("bulk").partitions(3)]
    assert flags == ["1", "1", "1"]
    assert (await registry.all())["bulk"] == QueueConfig("bulk", 3, paused=True)
    await registry.set_paused("bulk", False)
    assert [await redis.exists(p.paused) for p in keys.for_queue("bulk").partitions(3)] == [0, 0, 0]
    assert await redis.hget(keys.queues, "bulk") == '{"partitions":3,"paused":false}'


async def test_a_replica_with_a_stale_cache_keeps_another_ones_pause(redis: Redis, keys: KeySchema) -> None:
    one, two = QueueRegistry(redis, keys, cache_s=60), QueueRegistry(redis, keys, cache_s=60)
    await one.ensure("q")
    assert (await two.all())["q"].paused is False  # cached for a minute
    await one.set_paused("q", True)
    grown = await two.configure("q", 2)  # must not write back the stale "not paused"
    assert grown == QueueConfig("q", 2, True)
    assert [await redis.exists(p.paused) for p in keys.for_queue("q").partitions(2)] == [1, 1]
