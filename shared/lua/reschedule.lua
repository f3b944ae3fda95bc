--[[ reschedule.lua: move a scheduled task to a new due time.

A due time in the past makes it due at once (the scheduler promotes it on its next wake-up).
KEYS[1..16]  common keys (lib.lua)      KEYS[17]  task hash
ARGV[1]  events MAXLEN    ARGV[2]  task id    ARGV[3]  new due time (ms)
Returns: {1, 'scheduled'} on success, {0, current status} when it is not scheduled,
{0, ''} when the task does not exist.
]]
local task_key, id, due = KEYS[17], ARGV[2], ARGV[3]
local status = redis.call('HGET', task_key, 'status')
if not status then return {0, ''} end
if status ~= 'scheduled' then return {0, status} end
redis.call('ZADD', SCHEDULED, due, id)
redis.call('HSET', task_key, 'scheduled_for', due)
emit('rescheduled', id, 'scheduled')
return {1, 'scheduled'}
