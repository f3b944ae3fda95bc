--[[ revive.lua: put a failed or cancelled task back on its stream with fresh attempts.

Its dead letter (if any) is removed and it leaves the retention set; its error history is kept.
KEYS[1..16]  common keys (lib.lua)      KEYS[17]  task hash
ARGV[1]  events MAXLEN    ARGV[2]  task id
Returns: {1, 'pending'} on success, {0, current status} when it is not failed or cancelled,
{0, ''} when the task does not exist, {0, status, workflow id} when it is a workflow's step or on_failure
task (nothing written): its workflow re-runs it (workflow_retry.lua), which keeps the workflow's counts.
]]
local task_key, id = KEYS[17], ARGV[2]
local h = redis.call('HMGET', task_key, 'status', 'priority', 'dead_id', 'workflow')
local status = h[1]
if not status then return {0, ''} end
if h[4] and h[4] ~= '' then return {0, status, h[4]} end
if status ~= 'failed' and status ~= 'cancelled' then return {0, status} end
if h[3] and h[3] ~= '' then redis.call('XDEL', DEAD, h[3]) end
redis.call('ZREM', RETENTION, id)
redis.call('HSET', task_key, 'attempts', 0, 'error', '', 'dead_id', '', 'completed_at', '', 'started_at', '',
  'scheduled_for', '', 'worker', '', 'result', '')
redis.call('HDEL', task_key, 'cancel_requested', 'progress', 'progress_message')
enqueue(task_key, id, h[2])
set_status(task_key, id, status, 'pending')
redis.call('HINCRBY', STATS, 'revived_total', 1)
emit('retrying', id, 'pending')
return {1, 'pending'}
