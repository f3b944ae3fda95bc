--[[ promote.lua: move due scheduled tasks onto their priority streams, in one call.

The caller reads candidate ids from the scheduled zset (by due time) and passes their hashes; this
script decides with the server clock. A task is moved only by the call whose ZREM removed it, so
several scheduler replicas can run at once and each task is enqueued exactly once.
(One ZMSCORE reads every candidate's due time and one variadic ZREM, with the index moves at the
end of the call (lib.lua's deferred writes), removes the due ones: the script is atomic, so every
task ZMSCORE found due is removed by this call's ZREM and by no other call.)
KEYS[1..16]  common keys (lib.lua)
KEYS[16 + i] task hash of candidate i
ARGV[1]  events MAXLEN
ARGV[1 + i]  task id of candidate i
Groups and type limits (docs/groups-and-limits.md): a due task with 'g' in its `flow` joins its group's
waiting tasks instead of its stream (lib.lua's group_admit); and the groups held back until now (a
rate's next token) are served again. next_due_ms is also the next such hold's time, so the scheduler
wakes for it.
Returns: {now_ms, next_due_ms (-1 when nothing is scheduled), lateness_ms of each promoted task...}
]]
local now = now_ms()
local out = {now, -1}
local n = #ARGV - 1
local due_at = {}
for i = 1, n, CHUNK do
  local scores = redis.call('ZMSCORE', SCHEDULED, unpack(ARGV, i + 1, math.min(i + CHUNK - 1, n) + 1))
  for j = 1, #scores do due_at[i + j - 1] = tonumber(scores[j]) end  -- nil: not in the zset
end
local due, seen, removed = {}, {}, {}
local admitted = false  -- a task joined its group's waiting ones: group_wake serves them
for i = 1, n do
  local id, score = ARGV[i + 1], due_at[i]
  if score and not seen[id] and score <= now then
    seen[id] = true
    local k = #due + 1
    due[k], removed[k] = i, id
  end
end
DEFERRED.ZREM[SCHEDULED] = removed  -- written by flush_deferred() (nothing else defers to that key here)
for _, i in ipairs(due) do
  local id, task_key = ARGV[i + 1], KEYS[FIRST_TASK_KEY - 1 + i]
  local h = redis.call('HMGET', task_key, 'status', 'priority', 'flow')
  if h[1] == 'scheduled' and h[3] and string.find(h[3], 'g', 1, true) then
    redis.call('HSET', task_key, 'msg_id', '', 'status', 'pending')
    local g = redis.call('HMGET', task_key, 'group', 'created_at')  -- read for a grouped task only
    group_admit(group_base(), id, g[1] or '', h[2], g[2])
    admitted = true
    defer_move(id, 'scheduled', 'pending')
    emit_batched('promoted', id, 'pending')
    out[#out + 1] = now - due_at[i]
  elseif h[1] == 'scheduled' then
    local msg = redis.call('XADD', stream_of(h[2]), '*', 'id', id)
    redis.call('HSET', task_key, 'msg_id', msg, 'status', 'pending')
    defer_move(id, 'scheduled', 'pending')
    emit_batched('promoted', id, 'pending')
    out[#out + 1] = now - due_at[i]
  end
end
flush_deferred()
local first = redis.call('ZRANGE', SCHEDULED, 0, 0, 'WITHSCORES')
if #first > 0 then out[2] = tonumber(first[2]) end
local held = group_wake(now, admitted)  -- groups and type limits: see the header
if held >= 0 and (out[2] < 0 or held < out[2]) then out[2] = held end
return out
