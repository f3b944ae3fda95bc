--[[ workflow_cancel.lua: cancel a running workflow: its waiting steps are skipped, its pending and
scheduled steps cancelled (never run), its running steps asked to stop (as cancel.lua does: each ends
cancelled when its worker stops it). The workflow ends `cancelled` once no step is left running (at
once when none runs).

KEYS[1..16]  common keys (lib.lua)     KEYS[17]  workflow hash     KEYS[18]  cancels stream
ARGV[1]  events MAXLEN    ARGV[2]  workflow id    ARGV[3]  result TTL (ms; a step's `keep_s` when shorter)
Returns: {1, the workflow's status after the call} on success, {0, status} when it is not running,
{0, ''} when the workflow does not exist.
]]
local CANCELS_MAXLEN = 1000
local wf_key, wid = KEYS[17], ARGV[2]
local w = redis.call('HMGET', wf_key, 'status', 'step_ids')
if not w[1] then return {0, ''} end
if w[1] ~= 'running' then return {0, w[1]} end
redis.call('HSET', wf_key, 'cancelling', '1')
local base = string.match(wf_key, '^(.*:)wf:[^:]*$')
local now = now_ms()
local skipped = 0
for id in string.gmatch(w[2] or '', '%S+') do
  if wf_skip_one(base, id, now) then skipped = skipped + 1 end
end
if skipped > 0 then wf_close(base, wf_key, wid, skipped, skipped, now) end
for id in string.gmatch(w[2] or '', '%S+') do
  local task_key = base .. 'task:' .. id
  local h = redis.call('HMGET', task_key, 'status', 'msg_id', 'priority', 'cancel_requested', 'type', 'keep_s',
    'flow')
  local status = h[1]
  if status == 'processing' and not h[4] then
    redis.call('HSET', task_key, 'cancel_requested', '1')
    redis.call('XADD', KEYS[18], 'MAXLEN', '~', CANCELS_MAXLEN, '*', 'id', id, 'msg', h[2] or '', 'type', h[5] or '')
    emit('cancel_requested', id, 'processing')
  elseif status == 'pending' or status == 'scheduled' then
    if status == 'pending' and h[2] and h[2] ~= '' then redis.call('XDEL', stream_of(h[3]), h[2]) end
    if status == 'scheduled' then redis.call('ZREM', SCHEDULED, id) end
    local ttl = h[6] and math.min(tonumber(h[6]) * 1000, tonumber(ARGV[3])) or ARGV[3]
    finish_terminal(task_key, id, status, 'cancelled', now, ttl)
    redis.call('HINCRBY', STATS, 'cancelled_total', 1)
    emit('cancelled', id, 'cancelled')
    flow_ended(task_key, id, h[7] or 'w', 'cancelled')  -- its workflow's part, and its type limit's (g)
  end
end
return {1, redis.call('HGET', wf_key, 'status')}
