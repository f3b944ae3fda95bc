--[[ poison.lua: dead-letter tasks whose entry was delivered more than STREAMQ_MAX_DELIVERIES times
without finishing (their worker crashed every time), in one call.

The caller has just reclaimed these entries (XAUTOCLAIM), so they are pending for it. Writes are
ordered dead letter first, acknowledgement last: were the script ever cut short, a task could be
dead-lettered twice but never lost.
KEYS[1..16]  common keys (lib.lua)
KEYS[16 + i] task hash of entry i
ARGV[1]  events MAXLEN   ARGV[2]  consumer group   ARGV[3]  consumer   ARGV[4]  result TTL (ms; a task's
  `keep_s` when shorter)
per entry i, from ARGV[5 + 5*(i-1)]: task id, entry id, priority of its stream, delivery count, error
Returns: per entry, 'failed' when dead-lettered, 'stale' when the task no longer waits on that
entry (only acknowledged), 'lost' when the entry is not pending for this consumer (untouched).
]]
local now = now_ms()
local group, consumer, ttl = ARGV[2], ARGV[3], ARGV[4]
local out = {}
local n = (#ARGV - 4) / 5
for i = 1, n do
  local task_key = KEYS[FIRST_TASK_KEY - 1 + i]
  local a = 5 + 5 * (i - 1)
  local id, msg, stream, deliveries, err = ARGV[a], ARGV[a + 1], stream_of(ARGV[a + 2]), ARGV[a + 3], ARGV[a + 4]
  if #redis.call('XPENDING', stream, group, msg, msg, 1, consumer) == 0 then
    out[i] = 'lost'
  else
    local h = redis.call('HMGET', task_key, 'status', 'msg_id', 'attempts', 'keep_s', 'flow')
    local status = h[1]
    if (status == 'pending' or status == 'processing') and h[2] == msg then
      local dead_id = redis.call('XADD', DEAD, '*', 'id', id, 'error', err, 'deliveries', deliveries)
      append_json(task_key, 'history', cjson.encode({attempt = tonumber(h[3]) or 0, error = err, at = now}))
      finish_terminal(task_key, id, status, 'failed', now, h[4] and math.min(tonumber(h[4]) * 1000, tonumber(ttl)) or ttl)
      redis.call('HSET', task_key, 'error', err, 'dead_id', dead_id)
      redis.call('HINCRBY', STATS, 'failed_total', 1)
      redis.call('HINCRBY', STATS, 'poisoned_total', 1)
      emit('failed', id, 'failed')
      emit('dead_lettered', id, 'failed')
      if h[5] then flow_ended(task_key, id, h[5], 'failed') end
      out[i] = 'failed'
    else
      out[i] = 'stale'
    end
    redis.call('XACK', stream, group, msg)
    redis.call('XDEL', stream, msg)
  end
end
return out
