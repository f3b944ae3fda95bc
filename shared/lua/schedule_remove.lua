--[[ schedule_remove.lua: delete a periodic schedule (tasks it already created are kept).

KEYS[1..16]  common keys (lib.lua)
KEYS[17]  schedule hash    KEYS[18]  every schedule name (zset)    KEYS[19]  due schedules (zset)
ARGV[1]  events MAXLEN   ARGV[2]  name
Returns: 1 when deleted, 0 when there is no such schedule.
]]
local name = ARGV[2]
redis.call('ZREM', KEYS[19], name)
redis.call('ZREM', KEYS[18], name)
return redis.call('DEL', KEYS[17])
