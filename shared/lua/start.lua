--[[ start.lua: mark delivered stream entries as running on one worker, in one call.

An entry whose task is gone, or no longer waits on that entry (cancelled, retried, finished),
is acknowledged and deleted instead, and reported as skipped.
A redelivery of the same entry (after a crash) does not count as a new attempt.
While the partition is paused (KEYS[18 + n] exists), a pending task is not started: its entry is
acknowledged, deleted and put back at its stream's tail, and the entry reported as skipped (this
closes the race with a blocking read that was waiting when the pause came).
KEYS[1..17]  common keys (lib.lua)
KEYS[17 + i] task hash of entry i
KEYS[18 + n] the partition's pause flag (optional; n = number of entries)
ARGV[1]  events MAXLEN    ARGV[2]  consumer group    ARGV[3]  consumer (worker id)
per entry i, from ARGV[4 + 3*(i-1)]: entry id, task id, priority of the stream it was read from
Returns: per entry, {} when skipped, else
  {id, type, payload, timeout_s, attempts, max_retries, retry_backoff_s, due_ms, priority}
]]
local now = now_ms()
local group, consumer = ARGV[2], ARGV[3]
local out = {}
local n = (#ARGV - 3) / 3
local paused = KEYS[FIRST_TASK_KEY + n] and redis.call('EXISTS', KEYS[FIRST_TASK_KEY + n]) == 1
for i = 1, n do
  local task_key = KEYS[FIRST_TASK_KEY - 1 + i]
  local a = 4 + 3 * (i - 1)
  local msg, id, stream = ARGV[a], ARGV[a + 1], stream_of(ARGV[a + 2])
  local h = redis.call('HMGET', task_key, 'status', 'msg_id', 'started_msg', 'priority', 'type', 'payload',
    'timeout_s', 'max_retries', 'retry_backoff_s', 'scheduled_for', 'created_at', 'attempts')
  local status, msg_id, started_msg, priority = h[1], h[2], h[3], h[4]
  if paused and status == 'pending' and msg_id == msg then
    redis.call('XACK', stream, group, msg)
    redis.call('XDEL', stream, msg)
    enqueue(task_key, id, priority)
    out[i] = {}
  elseif (status == 'pending' or status == 'processing') and msg_id == msg then
    local attempts = tonumber(h[12]) or 0
    if started_msg ~= msg then attempts = attempts + 1 end
    move_index(id, status, 'processing')
    redis.call('HSET', task_key, 'status', 'processing', 'attempts', attempts, 'started_msg', msg, 'started_at', now,
      'worker', consumer)
    if status == 'pending' then emit('started', id, 'processing') end
    local due = h[10]
    if not due or due == '' then due = h[11] end
    out[i] = {id, h[5], h[6], h[7] or '', attempts, h[8], h[9] or '', due, priority}
  else
    redis.call('XACK', stream, group, msg)
    redis.call('XDEL', stream, msg)
    out[i] = {}
  end
end
return out
