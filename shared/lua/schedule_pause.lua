--[[ schedule_pause.lua: pause or resume a periodic schedule.

A paused schedule leaves the due set, so no scheduler fires it; resuming puts it back at its next
tick from now (ticks missed while paused are not fired).
KEYS[1..16]  common keys (lib.lua)
KEYS[17]  schedule hash    KEYS[18]  every schedule name (zset)    KEYS[19]  due schedules (zset)
ARGV[1]  events MAXLEN   ARGV[2]  name   ARGV[3]  'pause' or 'resume'   ARGV[4]  next tick (ms) on resume
Returns: 1 when done, 0 when there is no such schedule.
]]
local sched_key, due_key, name, mode = KEYS[17], KEYS[19], ARGV[2], ARGV[3]
if redis.call('EXISTS', sched_key) == 0 then return 0 end
if mode == 'pause' then
  redis.call('ZREM', due_key, name)
  redis.call('HSET', sched_key, 'paused', 1, 'next_at', '')
else
  redis.call('ZADD', due_key, ARGV[4], name)
  redis.call('HSET', sched_key, 'paused', 0, 'next_at', ARGV[4])
end
return 1
