--[[ finish.lua: record the outcome of a batch of runs and acknowledge their entries, in one call.

An outcome is recorded only while the entry is still pending for this consumer: a worker whose
lease was lost (its entry reclaimed by another) cannot write over the task. Outcomes:
  completed  -> completed, result stored
  failed     -> retried (scheduled after delay_ms) while attempts <= max_retries and delay_ms >= 0,
                else failed and dead-lettered
The entry is acknowledged and deleted after the outcome is written, in the same script (entries
are acknowledged and deleted with one XACK and one XDEL per stream, and completions counted with
one HINCRBY, at the end of the call).
KEYS[1..17]  common keys (lib.lua)
KEYS[17 + i] task hash of outcome i
ARGV[1]  events MAXLEN   ARGV[2]  consumer group   ARGV[3]  consumer   ARGV[4]  result TTL (ms)
per outcome i, from ARGV[5 + 6*(i-1)]: task id, entry id, outcome, value (result JSON or error text),
  delay_ms (retry delay; -1 = never retry), history entry (JSON object, '' for none)
Returns: per outcome, the status written ('completed', 'scheduled', 'failed') or 'lost' when the
entry is no longer this consumer's, or 'stale' when the task no longer runs on that entry.
]]
local now = now_ms()
local group, consumer, ttl = ARGV[2], ARGV[3], ARGV[4]
local out = {}
local acks = {}  -- stream -> entry ids to acknowledge and delete
local completed = 0
local n = (#ARGV - 4) / 6
for i = 1, n do
  local task_key = KEYS[FIRST_TASK_KEY - 1 + i]
  local a = 5 + 6 * (i - 1)
  local id, msg, outcome, value, delay, hist = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3],
    tonumber(ARGV[a + 4]), ARGV[a + 5]
  local h = redis.call('HMGET', task_key, 'status', 'msg_id', 'priority', 'attempts', 'max_retries')
  local status, priority = h[1], h[3]
  if not priority then
    out[i] = 'stale'
  else
    local stream = stream_of(priority)
    local owner = redis.call('XPENDING', stream, group, msg, msg, 1, consumer)
    if #owner == 0 then
      out[i] = 'lost'
    elseif status ~= 'processing' or h[2] ~= msg then
      out[i] = 'stale'
    else
      if hist ~= '' then append_json(task_key, 'history', hist) end
      if outcome == 'completed' then
        finish_terminal(task_key, id, status, 'completed', now, ttl, {'result', value, 'error', ''})
        completed = completed + 1
        emit('completed', id, 'completed')
        out[i] = 'completed'
      elseif delay >= 0 and tonumber(h[4]) <= tonumber(h[5]) then
        local due = now + delay
        set_status(task_key, id, status, 'scheduled')
        redis.call('HSET', task_key, 'error', value, 'scheduled_for', due, 'msg_id', '')
        redis.call('ZADD', SCHEDULED, due, id)
        redis.call('HINCRBY', STATS, 'retried_total', 1)
        emit('retrying', id, 'scheduled')
        out[i] = 'scheduled'
      else
        finish_terminal(task_key, id, status, 'failed', now, ttl)
        local dead_id = redis.call('XADD', DEAD, '*', 'id', id, 'error', value)
        redis.call('HSET', task_key, 'error', value, 'dead_id', dead_id)
        redis.call('HINCRBY', STATS, 'failed_total', 1)
        emit('failed', id, 'failed')
        emit('dead_lettered', id, 'failed')
        out[i] = 'failed'
      end
      local ids = acks[stream]
      if not ids then
        ids = {}
        acks[stream] = ids
      end
      ids[#ids + 1] = msg
    end
  end
end
for stream, ids in pairs(acks) do
  redis.call('XACK', stream, group, unpack(ids))
  redis.call('XDEL', stream, unpack(ids))
end
if completed > 0 then redis.call('HINCRBY', STATS, 'completed_total', completed) end
return out
