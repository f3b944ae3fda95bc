--[[ limits_set.lua: set or remove one group or type limit of a partition, then serve the groups it may
have held back, in one call (docs/groups-and-limits.md).

Every held group the change can concern (the named group; every held group for the queue's default
or a type) is looked at again at once: a limit that grew lets them start now, one still reached holds
them again (lib.lua's group_release).
KEYS[1..16]  common keys (lib.lua)
ARGV[1]  events MAXLEN   ARGV[2]  'group' or 'type'   ARGV[3]  the group ('*': the queue's default for
  every group) or the type   ARGV[4]  the limit, 'concurrency|limit|per_ms' ('' removes it)
Returns: how many held groups were looked at again.
]]
local base = group_base()
local kind, name, spec = ARGV[2], ARGV[3], ARGV[4]
local hash = base .. (kind == 'type' and 'limits:types' or 'limits:groups')
if spec == '' then
  redis.call('HDEL', hash, name)
else
  redis.call('HSET', hash, name, spec)
end
if kind == 'type' then redis.call('DEL', base .. 'tblocked:' .. name) end  -- all looked at again below
local held = {name}
if kind == 'type' or name == '*' then
  held = redis.call('ZRANGE', base .. 'groups:wake', 0, -1)
  for _, g in ipairs(redis.call('ZRANGE', base .. 'groups:recheck', 0, -1)) do held[#held + 1] = g end
end
for _, g in ipairs(held) do
  redis.call('ZREM', base .. 'groups:wake', g)
  redis.call('ZREM', base .. 'groups:recheck', g)
  group_ready(base, g)
end
group_pump(base)
return #held
