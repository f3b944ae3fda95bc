--[[ promote.lua: move due scheduled tasks onto their priority streams, in one call.

The caller reads candidate ids from the scheduled zset (by due time) and passes their hashes; this
script decides with the server clock. A task is moved only by the call whose ZREM removed it, so
several scheduler replicas can run at once and each task is enqueued exactly once.
KEYS[1..17]  common keys (lib.lua)
KEYS[17 + i] task hash of candidate i
ARGV[1]  events MAXLEN
ARGV[1 + i]  task id of candidate i
Returns: {now_ms, next_due_ms (-1 when nothing is scheduled), lateness_ms of each promoted task...}
]]
local now = now_ms()
local out = {now, -1}
for i = 2, #ARGV do
  local id = ARGV[i]
  local task_key = KEYS[FIRST_TASK_KEY - 2 + i]
  local due = redis.call('ZSCORE', SCHEDULED, id)
  if due and tonumber(due) <= now and redis.call('ZREM', SCHEDULED, id) == 1 then
    local h = redis.call('HMGET', task_key, 'status', 'priority')
    if h[1] == 'scheduled' then
      enqueue(task_key, id, h[2])
      set_status(task_key, id, 'scheduled', 'pending')
      emit('promoted', id, 'pending')
      out[#out + 1] = now - tonumber(due)
    end
  end
end
local first = redis.call('ZRANGE', SCHEDULED, 0, 0, 'WITHSCORES')
if #first > 0 then out[2] = tonumber(first[2]) end
return out
