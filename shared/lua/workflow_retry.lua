--[[ workflow_retry.lua: re-run what did not complete of a failed or cancelled workflow: its failed,
cancelled and skipped steps get fresh attempts; each of them whose parents have all completed is queued
at once, the others wait for their parents again. Completed steps keep their results and do not run
again. The workflow is running again; its on_failure task may run again on a later failure.

KEYS[1..16]  common keys (lib.lua)     KEYS[17]  workflow hash
ARGV[1]  events MAXLEN    ARGV[2]  workflow id
Returns: {1, steps re-run} on success, {0, status} when it is not failed or cancelled, {0, ''} when the
workflow does not exist.
]]
local wf_key, wid = KEYS[17], ARGV[2]
local w = redis.call('HMGET', wf_key, 'status', 'step_ids', 'on_failure_id')
if not w[1] then return {0, ''} end
if w[1] ~= 'failed' and w[1] ~= 'cancelled' then return {0, w[1]} end
local base = string.match(wf_key, '^(.*:)wf:[^:]*$')
local now = now_ms()
local AGAIN = {failed = true, cancelled = true, skipped = true}

-- Back to `waiting`, as if never run: fresh attempts, no outcome, out of its old index and of retention
-- (a completed one too with `any_end`: the on_failure task, so it runs once per failure).
local function reset(id, any_end)
  local task_key = base .. 'task:' .. id
  local h = redis.call('HMGET', task_key, 'status', 'dead_id')
  if not (AGAIN[h[1]] or (any_end and h[1] == 'completed')) then return false end
  if h[2] and h[2] ~= '' then redis.call('XDEL', DEAD, h[2]) end
  redis.call('ZREM', RETENTION, id)
  redis.call('ZREM', STATUS_INDEX[h[1]] or (base .. 'idx:status:' .. h[1]), id)
  redis.call('ZADD', base .. 'idx:status:waiting', 0, id)
  redis.call('HSET', task_key, 'status', 'waiting', 'attempts', 0, 'error', '', 'dead_id', '', 'completed_at', '',
    'started_at', '', 'scheduled_for', '', 'worker', '', 'result', '', 'wf_closed', '', 'msg_id', '')
  redis.call('HDEL', task_key, 'cancel_requested', 'progress', 'progress_message', 'parents_json')
  return true
end

local again = {}
for id in string.gmatch(w[2] or '', '%S+') do
  if reset(id) then again[#again + 1] = id end
end
if w[3] and w[3] ~= '' then reset(w[3], true) end
local old = w[1]
redis.call('HSET', wf_key, 'status', 'running', 'open', #again, 'bad', 0, 'cancelling', '', 'completed_at', '',
  'failed_json', '')
redis.call('ZREM', base .. 'wf:idx:' .. old, wid)
redis.call('ZADD', base .. 'wf:idx:running', 0, wid)
redis.call('ZREM', base .. 'wf:retention', wid)
redis.call('XADD', EVENTS, 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'event', 'workflow.retrying', 'task', wid,
  'status', 'running', 'workflow', wid)
local admitted = false  -- a released step joined its type's waiting tasks (wf_release): pumped once
for _, id in ipairs(again) do
  local task_key = base .. 'task:' .. id
  local p = redis.call('HMGET', task_key, 'parent_ids', 'parent_names')
  local waiting = 0
  for pid in string.gmatch(p[1] or '', '%S+') do
    if redis.call('HGET', base .. 'task:' .. pid, 'status') ~= 'completed' then waiting = waiting + 1 end
  end
  redis.call('HSET', task_key, 'waiting_on', waiting)
  emit('retrying', id, 'waiting')
  if waiting == 0 then
    admitted = wf_release(base, task_key, id, wf_parent_results(base, p[1], p[2]), now) or admitted
  end
end
if admitted then group_pump(base) end
return {1, #again}
