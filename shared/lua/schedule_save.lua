--[[ schedule_save.lua: create a periodic schedule (fails when the name is taken).

KEYS[1..16]  common keys (lib.lua)
KEYS[17]  schedule hash    KEYS[18]  every schedule name (zset)    KEYS[19]  due schedules (zset)
ARGV[1]  events MAXLEN   ARGV[2]  name   ARGV[3]  first tick (ms)   ARGV[4]  nfields, then field, value...
Returns: {1, created_at ms} when created, {0, 0} when a schedule with that name exists.
]]
local sched_key, all_key, due_key = KEYS[17], KEYS[18], KEYS[19]
local name, first = ARGV[2], ARGV[3]
if redis.call('EXISTS', sched_key) == 1 then return {0, 0} end
local now = now_ms()
local hset = {'HSET', sched_key, 'created_at', now, 'next_at', first, 'paused', 0, 'fired_total', 0}
for f = 5, 4 + 2 * tonumber(ARGV[4]) do hset[#hset + 1] = ARGV[f] end
redis.call(unpack(hset))
redis.call('ZADD', all_key, 0, name)
redis.call('ZADD', due_key, first, name)
return {1, now}
