--[[ finish.lua: record the outcome of a batch of runs and acknowledge their entries, in one call.

An outcome is recorded only while the entry is still pending for this consumer: a worker whose
lease was lost (its entry reclaimed by another) cannot write over the task. Outcomes:
  completed  -> completed, result stored
  failed     -> retried (scheduled after delay_ms) while attempts <= max_retries and delay_ms >= 0,
                else failed and dead-lettered
  unhandled  -> the worker has no handler for the task's type: given back, not an attempt (attempts
                counted back, scheduled after delay_ms, or when delay_ms < 0 after a back-off of 1 s
                doubled per give-back, at most 60 s; `error` says what it waits for), until it has
                waited the history slot's milliseconds since its first give-back: then failed and
                dead-lettered
  cancelled  -> the worker stopped it on a cancel request (cancel.lua): cancelled, no retry. Any outcome
                but completed of a task whose cancel was requested is recorded so too.
The entry is acknowledged and deleted after the outcome is written, in the same script (entries
are acknowledged and deleted with one XACK and one XDEL per stream, counters incremented with one
HINCRBY each, index and retention entries written with one ZREM / ZADD per key, and the events
stream trimmed once, at the end of the call). Ownership is read with one XPENDING per stream, over
the batch's range of entry ids and for this consumer only (paged), not one XPENDING per outcome;
each task's hash is read once (its history included) and written with one HSET.
KEYS[1..16]  common keys (lib.lua)
KEYS[16 + i] task hash of outcome i
ARGV[1]  events MAXLEN   ARGV[2]  consumer group   ARGV[3]  consumer   ARGV[4]  result TTL (ms)
per outcome i, from ARGV[5 + 6*(i-1)]: task id, entry id, outcome, value (result JSON or error text),
  delay_ms (retry delay; -1 = never retry), history entry (JSON object, '' for none; for 'unhandled'
  the longest wait for a handler, in ms)
Returns: per outcome, the status written ('completed', 'scheduled', 'failed', 'cancelled') or 'lost' when the
entry is no longer this consumer's, or 'stale' when the task no longer runs on that entry.
A finished task's retention deadline is now + the result TTL, or now + its `keep_s` field (seconds,
written at submit when asked for) when that is shorter.
]]
-- append_json's new value, from the field's current value (read with the HMGET).
local function json_appended(current, entry)
  if not current or current == '' then return '[' .. entry .. ']' end
  return string.sub(current, 1, -2) .. ',' .. entry .. ']'
end

-- The lowest and highest of several stream entry ids ('ms-seq', compared as ids, not as strings). A
-- malformed id is returned as both, for XPENDING to refuse as it did when called per entry.
local function entry_id_range(ids)
  local lo, hi, lo_ms, lo_seq, hi_ms, hi_seq
  for _, id in ipairs(ids) do
    local ms, seq = string.match(id, '^(%d+)-?(%d*)$')
    if not ms then return id, id end
    ms, seq = tonumber(ms), tonumber(seq) or 0
    if not lo or ms < lo_ms or (ms == lo_ms and seq < lo_seq) then lo, lo_ms, lo_seq = id, ms, seq end
    if not hi or ms > hi_ms or (ms == hi_ms and seq > hi_seq) then hi, hi_ms, hi_seq = id, ms, seq end
  end
  return lo, hi
end

local now = now_ms()
local group, consumer, ttl = ARGV[2], ARGV[3], ARGV[4]
-- written as strings, formatted once (redis.call formats a Lua number with %.17g on every use)
local now_s, expires_s = string.format('%d', now), string.format('%d', now + tonumber(ttl))
local ttl_ms = tonumber(ttl)
local out = {}
local acks = {}  -- stream -> entry ids to acknowledge and delete
local completed, retried, failed, cancelled = 0, 0, 0, 0
local n = (#ARGV - 4) / 6
local msgs = {}
for i = 1, n do msgs[i] = ARGV[6 + 6 * (i - 1)] end
local lo, hi = entry_id_range(msgs)
local PAGE = 1000
local owned = {}  -- stream -> set of this batch's range's entry ids pending for this consumer

local function owned_on(stream)
  local set = owned[stream]
  if set then return set end
  set = {}
  local from = lo
  while true do
    local rows = redis.call('XPENDING', stream, group, from, hi, PAGE, consumer)
    for _, row in ipairs(rows) do set[row[1]] = true end
    if #rows < PAGE then break end
    from = '(' .. rows[#rows][1]
  end
  owned[stream] = set
  return set
end

-- One HSET of the task: `hset` (the command so far, with the history when there is one) and these
-- field, value pairs.
local function hset_with(hset, ...)
  local pairs_ = {...}
  for k = 1, #pairs_ do hset[#hset + 1] = pairs_[k] end
  redis.call(unpack(hset))
end

-- Failed for good: dead-lettered, `hset` (see hset_with) written with the error.
local function fail(task_key, id, status, hset, value, expires, flow)
  local dead_id = redis.call('XADD', DEAD, '*', 'id', id, 'error', value)
  hset_with(hset, 'status', 'failed', 'completed_at', now_s, 'msg_id', '', 'error', value, 'dead_id', dead_id)
  defer_move(id, status, 'failed')
  defer('ZADD', RETENTION, expires, id)
  failed = failed + 1
  emit_batched('failed', id, 'failed')
  emit_batched('dead_lettered', id, 'failed')
  if flow then flow_ended(task_key, id, flow, 'failed') end
  return 'failed'
end

for i = 1, n do
  local task_key = KEYS[FIRST_TASK_KEY - 1 + i]
  local a = 5 + 6 * (i - 1)
  local id, msg, outcome, value, delay, hist = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3],
    tonumber(ARGV[a + 4]), ARGV[a + 5]
  local h = redis.call('HMGET', task_key, 'status', 'msg_id', 'priority', 'attempts', 'max_retries', 'history',
    'cancel_requested', 'keep_s', 'flow')
  if h[7] and outcome ~= 'completed' then outcome = 'cancelled' end
  local status, priority = h[1], h[3]
  if not priority then
    out[i] = 'stale'
  else
    local stream = stream_of(priority)
    if not owned_on(stream)[msg] then
      out[i] = 'lost'
    elseif status ~= 'processing' or h[2] ~= msg then
      out[i] = 'stale'
    else
      local expires = expires_s
      if h[8] then expires = string.format('%d', now + math.min(tonumber(h[8]) * 1000, ttl_ms)) end
      local hset = {'HSET', task_key}
      if hist ~= '' then hset[3], hset[4] = 'history', json_appended(h[6], hist) end
      if outcome == 'completed' then
        hset_with(hset, 'status', 'completed', 'completed_at', now_s, 'msg_id', '', 'result', value, 'error', '')
        defer_move(id, status, 'completed')
        defer('ZADD', RETENTION, expires, id)
        completed = completed + 1
        emit_batched('completed', id, 'completed')
        if h[9] then flow_ended(task_key, id, h[9], 'completed') end
        out[i] = 'completed'
      elseif outcome == 'cancelled' then
        hset_with(hset, 'status', 'cancelled', 'completed_at', now_s, 'msg_id', '', 'error', value)
        defer_move(id, status, 'cancelled')
        defer('ZADD', RETENTION, expires, id)
        cancelled = cancelled + 1
        emit_batched('cancelled', id, 'cancelled')
        if h[9] then flow_ended(task_key, id, h[9], 'cancelled') end
        out[i] = 'cancelled'
      elseif outcome == 'unhandled' then
        local u = redis.call('HMGET', task_key, 'unhandled_since', 'handoffs')
        local since, handoffs = tonumber(u[1]) or now, (tonumber(u[2]) or 0) + 1
        if now - since >= tonumber(hist) then
          local attempts = math.max(0, (tonumber(h[4]) or 1) - 1)
          out[i] = fail(task_key, id, status, {'HSET', task_key, 'attempts', attempts},
            'given up after ' .. math.floor(tonumber(hist) / 1000) .. ' s (STREAMQ_UNHANDLED_TIMEOUT_S) ' .. value,
            expires, h[9])
        else
          if delay < 0 then delay = math.min(1000 * math.floor(2 ^ math.min(handoffs - 1, 6)), 60000) end
          local due = now + delay
          redis.call('HSET', task_key, 'status', 'scheduled', 'error', value, 'scheduled_for', due, 'msg_id', '',
            'attempts', math.max(0, (tonumber(h[4]) or 1) - 1), 'started_msg', '', 'unhandled_since', since,
            'handoffs', handoffs)
          defer_move(id, status, 'scheduled')
          defer('ZADD', SCHEDULED, due, id)
          emit_batched('given_back', id, 'scheduled')
          if h[9] then flow_deferred(task_key, id, h[9]) end
          out[i] = 'scheduled'
        end
      elseif delay >= 0 and tonumber(h[4]) <= tonumber(h[5]) then
        local due = now + delay
        hset_with(hset, 'status', 'scheduled', 'error', value, 'scheduled_for', due, 'msg_id', '')
        defer_move(id, status, 'scheduled')
        defer('ZADD', SCHEDULED, due, id)
        retried = retried + 1
        emit_batched('retrying', id, 'scheduled')
        if h[9] then flow_deferred(task_key, id, h[9]) end
        out[i] = 'scheduled'
      else
        out[i] = fail(task_key, id, status, hset, value, expires, h[9])
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
flush_deferred()
for stream, ids in pairs(acks) do
  redis.call('XACK', stream, group, unpack(ids))
  redis.call('XDEL', stream, unpack(ids))
end
if retried > 0 then redis.call('HINCRBY', STATS, 'retried_total', retried) end
if failed > 0 then redis.call('HINCRBY', STATS, 'failed_total', failed) end
if completed > 0 then redis.call('HINCRBY', STATS, 'completed_total', completed) end
if cancelled > 0 then redis.call('HINCRBY', STATS, 'cancelled_total', cancelled) end
return out
