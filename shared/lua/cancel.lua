--[[ cancel.lua: cancel a pending or scheduled task so it never runs.

A pending task's stream entry is deleted; if a worker already read it but has not started it,
start.lua sees the cancelled status and acknowledges the entry without running it.
KEYS[1..16]  common keys (lib.lua)      KEYS[17]  task hash
ARGV[1]  events MAXLEN    ARGV[2]  task id    ARGV[3]  result TTL (ms)
Returns: {1, 'cancelled'} on success, {0, current status} when it cannot be cancelled,
{0, ''} when the task does not exist.
]]
local task_key, id = KEYS[17], ARGV[2]
local h = redis.call('HMGET', task_key, 'status', 'msg_id', 'priority')
local status = h[1]
if not status then return {0, ''} end
if status == 'pending' then
  if h[2] and h[2] ~= '' then redis.call('XDEL', stream_of(h[3]), h[2]) end
elseif status == 'scheduled' then
  redis.call('ZREM', SCHEDULED, id)
else
  return {0, status}
end
finish_terminal(task_key, id, status, 'cancelled', now_ms(), ARGV[3])
redis.call('HINCRBY', STATS, 'cancelled_total', 1)
emit('cancelled', id, 'cancelled')
return {1, 'cancelled'}
