--[[ cancel.lua: cancel a pending or scheduled task so it never runs, or ask for a running one to stop.

A pending task's stream entry is deleted; if a worker already read it but has not started it,
start.lua sees the cancelled status and acknowledges the entry without running it.
A processing task is marked `cancel_requested` and the request appended to the partition's cancels
stream (capped at about CANCELS_MAXLEN entries), which the workers running its tasks poll: the one
running it stops it and records it cancelled (finish.lua). From then on it is never retried (finish.lua
turns a failure into cancelled) nor started again after a crash (start_entry leaves it to the
reclaimer, which records it cancelled). A second request for the same run changes nothing.
KEYS[1..16]  common keys (lib.lua)      KEYS[17]  task hash     KEYS[18]  cancels stream
ARGV[1]  events MAXLEN    ARGV[2]  task id    ARGV[3]  result TTL (ms; the task's `keep_s` when shorter)
Returns: {1, 'cancelled'} on success, {2, 'processing'} when a running task was asked to stop,
{0, current status} when it cannot be cancelled, {0, ''} when the task does not exist.
]]
local CANCELS_MAXLEN = 1000
local task_key, id = KEYS[17], ARGV[2]
local h = redis.call('HMGET', task_key, 'status', 'msg_id', 'priority', 'cancel_requested', 'type', 'keep_s', 'flow')
local status = h[1]
if not status then return {0, ''} end
if status == 'processing' then
  if not h[4] then
    redis.call('HSET', task_key, 'cancel_requested', '1')
    redis.call('XADD', KEYS[18], 'MAXLEN', '~', CANCELS_MAXLEN, '*', 'id', id, 'msg', h[2] or '', 'type', h[5] or '')
    emit('cancel_requested', id, 'processing')
  end
  return {2, 'processing'}
elseif status == 'pending' then
  if h[2] and h[2] ~= '' then redis.call('XDEL', stream_of(h[3]), h[2]) end
elseif status == 'scheduled' then
  redis.call('ZREM', SCHEDULED, id)
else
  return {0, status}
end
local ttl = h[6] and math.min(tonumber(h[6]) * 1000, tonumber(ARGV[3])) or ARGV[3]
finish_terminal(task_key, id, status, 'cancelled', now_ms(), ttl)
redis.call('HINCRBY', STATS, 'cancelled_total', 1)
emit('cancelled', id, 'cancelled')
if h[7] then flow_ended(task_key, id, h[7], 'cancelled') end
return {1, 'cancelled'}
