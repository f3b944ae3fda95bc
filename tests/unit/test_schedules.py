"""Cron ticks and schedule validation (no Redis)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from streamq.shared.keys import KeySchema
from streamq.shared.schedules import ScheduleCreate, next_tick_ms
from streamq.shared.scripts import names, source


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def test_next_tick_is_strictly_after() -> None:
    assert next_tick_ms("* * * * * *", "UTC", _ms("2030-01-01T00:00:00+00:00")) == _ms("2030-01-01T00:00:01+00:00")
    assert next_tick_ms("* * * * * *", "UTC", _ms("2030-01-01T00:00:00.400+00:00")) == _ms("2030-01-01T00:00:01+00:00")
    assert next_tick_ms("*/5 * * * *", "UTC", _ms("2030-01-01T00:03:00+00:00")) == _ms("2030-01-01T00:05:00+00:00")
    assert next_tick_ms("* * * * * */10", "UTC", _ms("2030-01-01T00:00:01+00:00")) == _ms("2030-01-01T00:00:10+00:00")


def test_next_tick_follows_the_time_zone_across_daylight_saving() -> None:
    # 03:00 in Paris is 02:00 UTC in winter and 01:00 UTC after the switch on 2030-03-31
    before = next_tick_ms("0 3 * * *", "Europe/Paris", _ms("2030-03-30T12:00:00+00:00"))
    after = next_tick_ms("0 3 * * *", "Europe/Paris", _ms("2030-04-01T12:00:00+00:00"))
    assert datetime.fromtimestamp(before / 1000, UTC).hour == 1  # 2030-03-31 03:00 CEST
    assert datetime.fromtimestamp(after / 1000, UTC).hour == 1
    winter = next_tick_ms("0 3 * * *", "Europe/Paris", _ms("2030-01-10T12:00:00+00:00"))
    assert datetime.fromtimestamp(winter / 1000, UTC).hour == 2


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"cron": "every day"}, "cron", "not a valid cron expression"),
        ({"cron": "* * * 13 *"}, "cron", "not a valid cron expression"),
        ({"timezone": "Europe/Nowhere"}, "timezone", "IANA time zone"),
        ({"name": ""}, "name", "at least 1 character"),
        ({"task": {"type": "noop", "idempotency_key": "k"}}, "task", "idempotency_key is not allowed"),
        ({"task": {"type": "noop", "max_retries": -1}}, "task", "greater than or equal to 0"),
        ({"extra": 1}, "extra", "Extra inputs are not permitted"),
    ],
)
def test_bad_schedules_name_the_field(change: dict[str, object], field: str, fragment: str) -> None:
    body = {"name": "s", "cron": "0 * * * *", "task": {"type": "noop"}, **change}
    with pytest.raises(ValidationError) as caught:
        ScheduleCreate.model_validate(body)
    [error] = caught.value.errors()
    assert error["loc"][0] == field and fragment in error["msg"]


def test_schedule_keys_share_the_queue_hash_tag() -> None:
    keys = KeySchema("p", "q")
    for key in (keys.schedule("n"), keys.schedules, keys.schedules_due):
        assert key.startswith("p:{q}:")


def test_every_new_script_has_a_header() -> None:
    for name in ("promote", "renew", "poison", "requeue", "drop_consumer", "reschedule", "fire"):
        assert name in names()
        text = source(name)
        assert f"--[[ {name}.lua:" in text and "KEYS" in text and "ARGV" in text and "Returns" in text
