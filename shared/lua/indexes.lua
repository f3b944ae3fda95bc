#!lua flags=no-writes
--[[ indexes.lua: read a partition's status indexes at one instant (read-only; no lib.lua).

Every task is in exactly one status index and there is no index of all tasks (it would cost each
submit an index write): a count of all tasks, or a page of them in id order, is read from the six
together. One script, so a task moving between two indexes meanwhile is counted or listed once.
Flags (the shebang): no-writes, so Redis runs it while it refuses writes (out of memory under
noeviction, a read-only replica, a failed persistence check) and refuses any write it would make;
a script with flags may touch only the KEYS it declares, all in one cluster hash slot.
KEYS[1..n]  the indexes (zsets, score 0, ordered by id; one partition's: one hash slot)
ARGV[1]  'count', or 'page'
ARGV[2]  'page': the upper bound, as ZRANGE BYLEX takes it ('+' or '(<id>')
ARGV[3]  'page': how many ids at most from each index
Returns: 'count': each index's size, in KEYS order; 'page': each index's ids below the bound,
greatest first, at most ARGV[3] each, in KEYS order (the caller merges them).
]]
local out = {}
if ARGV[1] == 'count' then
  for i = 1, #KEYS do out[i] = redis.call('ZCARD', KEYS[i]) end
else
  for i = 1, #KEYS do
    out[i] = redis.call('ZRANGE', KEYS[i], ARGV[2], '-', 'BYLEX', 'REV', 'LIMIT', 0, ARGV[3])
  end
end
return out
