"""How a script gets the lib.lua definitions it uses (streamq.shared.scripts.assemble): by name,
transitively, in the library's order, after the script's shebang and header."""

from __future__ import annotations

import hashlib
from importlib import resources

from streamq.shared.scripts import (
    LIBRARY,
    STANDALONE,
    assemble,
    library_units,
    names,
    names_used,
    source,
    strip_comments_and_strings,
)

LIB = """--[[ the library's header: left out ]]
local A = KEYS[1]
local B = KEYS[2]

-- c's comment
local function c()
  return A
end

--[[ d's long
comment ]]
local function d(x)
  return c() .. x
end

local function unused()
  return B
end
"""


def lua(name: str) -> str:
    return (resources.files("streamq.shared") / "lua" / f"{name}.lua").read_text()


def test_a_script_gets_what_it_calls_and_what_that_calls_in_library_order() -> None:
    script = "--[[ s.lua: header\nKEYS[1] a key\n]]\nlocal y = d('x')\nreturn y\n"
    out = assemble(script, LIB)
    assert out.startswith("--[[ s.lua: header\nKEYS[1] a key\n]]\n-- lib.lua: A, c, d\n")
    assert out.index("local A =") < out.index("-- c's comment\nlocal function c()") < out.index("--[[ d's long")
    assert out.endswith("local y = d('x')\nreturn y\n")
    assert "unused" not in out and "local B" not in out and "the library's header" not in out


def test_the_shebang_stays_first_and_a_script_naming_nothing_gets_nothing() -> None:
    script = "#!lua flags=no-writes\n--[[ r.lua ]]\nreturn redis.call('GET', KEYS[1])\n"
    assert assemble(script, LIB) == script
    out = assemble("#!lua\n--[[ w.lua ]]\nreturn c()\n", LIB)
    assert out.startswith("#!lua\n--[[ w.lua ]]\n-- lib.lua: A, c\n")


def test_names_in_comments_strings_and_fields_are_not_uses() -> None:
    script = "-- d() here is a comment\nlocal t = {}\nt.d = 'd'\nt:c()\nlocal s = [[unused]] .. \"A\"\nreturn s\n"
    assert assemble(script, LIB) == script
    assert names_used("x = 'a' .. d") >= {"x", "d"} and "a" not in names_used("x = 'a' .. d")
    assert strip_comments_and_strings("a --[==[ x\n]] y ]==] b 'c\\'d' e") == "a  \n b   e"


def test_each_library_definition_is_one_unit_with_its_comments() -> None:
    units = library_units(LIB)
    assert [u.names for u in units] == [("A",), ("B",), ("c",), ("d",), ("unused",)]
    assert units[2].text.startswith("-- c's comment\n") and units[3].text.startswith("--[[ d's long\ncomment ]]\n")
    assert units[3].uses >= {"c", "x"}


def test_the_real_scripts_get_only_what_they_use() -> None:
    library = lua(LIBRARY)
    defined = {n for unit in library_units(library) for n in unit.names}
    assert {"now_ms", "emit", "flush_deferred", "start_entry", "STATUS_INDEX"} <= defined
    used_somewhere: set[str] = set()
    for name in names():
        text = source(name)
        assert text == assemble(lua(name), library) or name in STANDALONE
        included = {n for unit in library_units(library) for n in unit.names if unit.text in text}
        used_somewhere |= included
        # every library name the script (with what it got) mentions is defined in it
        assert names_used(text) & defined <= included, name
    assert used_somewhere == defined  # no definition that no script uses
    assert "local function start_entry" in source("take") and "local function defer_move" in source("take")
    assert "flush_deferred" not in source("renew") and "start_entry" not in source("finish")


def test_standalone_scripts_name_nothing_of_the_library() -> None:
    defined = {n for unit in library_units(lua(LIBRARY)) for n in unit.names}
    for name in STANDALONE:
        assert source(name) == lua(name)
        assert not names_used(lua(name)) & defined, name


def test_every_script_keeps_its_header_first() -> None:
    for name in names():
        text = source(name)
        body = text.split("\n", 1)[1] if text.startswith("#!") else text
        assert body.startswith(f"--[[ {name}.lua:"), name


def test_the_same_sources_give_the_same_script_and_sha() -> None:
    library = lua(LIBRARY)
    for name in names():
        if name in STANDALONE:
            continue
        library_units.cache_clear()
        again = assemble(lua(name), library)
        assert hashlib.sha1(again.encode()).hexdigest() == hashlib.sha1(source(name).encode()).hexdigest()
