#!lua
--[[ writable.lua: whether Redis accepts writes now, without writing anything (standalone; no lib.lua).

A script that declares flags (the shebang) and not no-writes may write, so Redis checks before running
it what it would check before a write: it refuses the call with OOM (used memory above maxmemory under
noeviction), READONLY (a read-only replica) or MISCONF (a failed RDB save or AOF write). The api's
/api/health reports that as its `writes` field.
KEYS[1]  any key of the partition whose node is asked (on a cluster, the node serving its slot)
Returns: 1 (refused calls answer the error instead).
]]
return 1
