--[[ fire.lua: fire one tick of a periodic schedule: create its task and move the schedule on to its
next tick, in one call. The tick is fired only when the schedule is still due at the tick the caller
read (compare and set on its score), so with several scheduler replicas each tick fires once.
The caller computes the next tick after now: ticks missed while no scheduler ran collapse into
this one firing.
KEYS[1..16]  common keys (lib.lua)
KEYS[17]  schedule hash    KEYS[18]  due schedules (zset)    KEYS[19]  new task hash
KEYS[20]  type index of the new task
ARGV[1]  events MAXLEN   ARGV[2]  schedule name   ARGV[3]  the tick read (ms)   ARGV[4]  next tick (ms)
ARGV[5]  new task id     ARGV[6]  its priority    ARGV[7]  nfields, then field, value... of the task hash
A task of a type under a limit (limits:types) gets no stream entry: it waits for its limits, as a
submitted one does (lib.lua's group_submitted; docs/groups-and-limits.md), counted in this partition.
Returns: 1 when fired, 0 when another scheduler fired this tick (or the schedule was paused/deleted).
]]
local sched_key, due_key, task_key, type_key = KEYS[17], KEYS[18], KEYS[19], KEYS[20]
local name, tick, next_tick, id, priority = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local score = redis.call('ZSCORE', due_key, name)
if not score or tonumber(score) ~= tonumber(tick) then return 0 end
local now = now_ms()
local hset = {'HSET', task_key, 'created_at', now, 'scheduled_for', tick, 'schedule', name}
for f = 8, 7 + 2 * tonumber(ARGV[7]) do hset[#hset + 1] = ARGV[f] end
redis.call(unpack(hset))
redis.call('ZADD', type_key, 0, id)
if type_limited(redis.call('HGET', task_key, 'type') or '') then  -- waits for its limits, as a submitted task
  redis.call('HSET', task_key, 'msg_id', '')
  set_status(task_key, id, nil, 'pending')
  group_submitted(task_key, id, 'pending', '', priority, now)
  group_pump(group_base())
else
  enqueue(task_key, id, priority)
  set_status(task_key, id, nil, 'pending')
end
redis.call('HINCRBY', STATS, 'submitted_total', 1)
emit('created', id, 'pending')
redis.call('ZADD', due_key, next_tick, name)
redis.call('HSET', sched_key, 'next_at', next_tick, 'last_at', tick, 'last_task', id)
redis.call('HINCRBY', sched_key, 'fired_total', 1)
return 1
