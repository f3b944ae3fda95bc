from streamq.services.scheduler.clock import DRIFT_MS_PER_S, ServerClock


def test_offset_is_the_middle_of_the_round_trip() -> None:
    clock = ServerClock()
    clock.observe(server_ms=10_005, sent_ms=1_000.0, received_ms=1_002.0)
    assert clock.offset_ms == 10_005 + 0.5 - 1_001.0  # whole ms rounded down: the middle of that ms


def test_a_narrower_round_trip_replaces_a_wider_one_and_not_the_other_way() -> None:
    clock = ServerClock()
    clock.observe(server_ms=5_000, sent_ms=1_000.0, received_ms=1_008.0)  # slow: 8 ms wide
    clock.observe(server_ms=5_011, sent_ms=1_010.0, received_ms=1_010.4)  # fast
    assert abs(clock.offset_ms - (5_011 + 0.5 - 1_010.2)) < 1e-9 and abs(clock.width_ms - 0.4) < 1e-9
    kept = clock.offset_ms
    clock.observe(server_ms=5_030, sent_ms=1_020.0, received_ms=1_026.0)  # slow again: ignored
    assert clock.offset_ms == kept


def test_a_kept_round_trip_ages() -> None:
    clock = ServerClock()
    clock.observe(server_ms=5_000, sent_ms=0.0, received_ms=0.2)
    later_s = 3.0
    width = 0.2 + later_s * DRIFT_MS_PER_S - 0.1  # narrower than the kept one once aged
    sent = later_s * 1000
    clock.observe(server_ms=8_002, sent_ms=sent, received_ms=sent + width)
    assert abs(clock.offset_ms - (8_002 + 0.5 - (sent + width / 2))) < 1e-9
