--[[ webhook_record.lua: record one webhook attempt: the task's delivery log, the delivery's next
due time or final status, and the task's webhook_status, in one call.

The log entry is appended while the task exists. The delivery changes only while this attempt is its latest
(attempt == its attempts counter): a notifier whose lease ran out cannot overwrite the attempt that
took over. The task's webhook_status changes only while this delivery is the task's latest.
Once the task is gone (removed while this delivery was still due: remove.lua leaves such a delivery to
run), nothing is logged and the delivery is deleted when it ends, so no record outlives both.
KEYS[1..16]  common keys (lib.lua)
KEYS[17] due zset    KEYS[18] delivery hash    KEYS[19] task hash    KEYS[20] task's delivery log
ARGV[1]  events MAXLEN    ARGV[2]  delivery id    ARGV[3] attempt    ARGV[4] status (delivered,
retrying, failed, gone)    ARGV[5] delay before the next attempt (ms, when retrying)
ARGV[6]  log entry (JSON)    ARGV[7] log length cap    ARGV[8] how long finished records are kept (ms)
ARGV[9]  error text ('' when none)
Returns: the status written, 'stale' (a later attempt owns the delivery) or 'missing'.
]]
local due_key, delivery_key, task_key, log_key = KEYS[17], KEYS[18], KEYS[19], KEYS[20]
local id, attempt, status = ARGV[2], ARGV[3], ARGV[4]
local keep = tonumber(ARGV[8])
local task_exists = redis.call('EXISTS', task_key) == 1
if task_exists then
  redis.call('RPUSH', log_key, ARGV[6])
  redis.call('LTRIM', log_key, -tonumber(ARGV[7]), -1)
  redis.call('PEXPIRE', log_key, keep)
end
local current = redis.call('HGET', delivery_key, 'attempts')
if not current then return 'missing' end
if current ~= attempt then return 'stale' end
if status == 'retrying' then
  local due = now_ms() + tonumber(ARGV[5])
  redis.call('ZADD', due_key, due, id)
  redis.call('HSET', delivery_key, 'status', status, 'next_at', due, 'error', ARGV[9])
elseif not task_exists then
  redis.call('ZREM', due_key, id)
  redis.call('DEL', delivery_key)
else
  redis.call('ZREM', due_key, id)
  redis.call('HSET', delivery_key, 'status', status, 'next_at', '', 'error', ARGV[9])
  redis.call('PEXPIRE', delivery_key, keep)
end
if task_exists and redis.call('HGET', task_key, 'webhook_delivery') == id then
  redis.call('HSET', task_key, 'webhook_status', status)
end
return status
