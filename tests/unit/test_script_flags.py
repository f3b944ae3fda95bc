"""Script flags (Redis 7's ``#!lua flags=...``): which scripts declare them, and that the shebang stays
the first line of the source Redis gets (the others get lib.lua definitions after it)."""

from __future__ import annotations

from streamq.shared.scripts import names, source


def test_only_the_reading_script_declares_no_writes_and_flags_stay_first() -> None:
    flags = {name: source(name).split("\n", 1)[0] for name in names() if source(name).startswith("#!")}
    assert flags == {"indexes": "#!lua flags=no-writes", "ratelimit": "#!lua flags=allow-oom", "writable": "#!lua"}
    for name in names():
        assert "#!" not in source(name)[2:], name  # a shebang anywhere but the start is a syntax error
