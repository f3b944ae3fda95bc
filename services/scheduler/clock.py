"""The server's clock, estimated from this process's (the promoter sleeps until due times on it).

Every promote.lua reply carries the server's time in whole milliseconds, read somewhere between the
local times the call was sent and its reply received. The estimate is the middle of that window, so
its error is at most half the round trip: a round trip slowed by a busy event loop or a busy server
(several ms on a loaded machine or a cluster pipeline) would make it worse, so the narrowest window
seen recently is kept, and a later one replaces it only when it is narrower than the kept window
widened by its age (``DRIFT_MS_PER_S``: clocks drift, so an old sample is trusted less).
"""

from __future__ import annotations

import math
import time

DRIFT_MS_PER_S = 1.0  # a kept window counts as this much wider per second of age


class ServerClock:
    def __init__(self) -> None:
        self.offset_ms = 0.0  # server clock minus local clock
        self.width_ms = math.inf  # the round trip the offset was taken from
        self.taken_ms = 0.0  # local time of that round trip

    def now_ms(self) -> float:
        return time.time() * 1000 + self.offset_ms

    def observe(self, server_ms: int, sent_ms: float, received_ms: float) -> None:
        """One reply's server time (whole ms, rounded down) and the local times around its call."""
        width = received_ms - sent_ms
        aged = self.width_ms + (sent_ms - self.taken_ms) / 1000 * DRIFT_MS_PER_S
        if width <= aged:
            self.offset_ms = server_ms + 0.5 - (sent_ms + received_ms) / 2
            self.width_ms, self.taken_ms = width, sent_ms
