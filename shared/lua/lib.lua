--[[ lib.lua: helpers for the state-change scripts. shared/scripts.py puts into each script the
top-level definitions below that it names (and those they name), in this file's order, each with the
comment lines right above it; so every definition is one top-level `local` statement.

Every state-change script receives the same first 16 KEYS (KeySchema.common()):
  KEYS[1..6]   status indexes: pending, scheduled, processing, completed, failed, cancelled
  KEYS[7]      events stream          KEYS[8]  stats hash           KEYS[9] retention zset
  KEYS[10]     scheduled zset         KEYS[11] dead-letter stream
  KEYS[12..16] priority streams 1..5 (KEYS[11 + priority])
and ARGV[1] = the events stream's approximate MAXLEN. Script-specific KEYS start at KEYS[17].
Times are the Redis server's clock in milliseconds, so every host agrees on what is due.
]]
local STATUS_INDEX = {
  pending = KEYS[1], scheduled = KEYS[2], processing = KEYS[3],
  completed = KEYS[4], failed = KEYS[5], cancelled = KEYS[6],
}
local EVENTS = KEYS[7]
local STATS = KEYS[8]
local RETENTION = KEYS[9]
local SCHEDULED = KEYS[10]
local DEAD = KEYS[11]
local EVENTS_MAXLEN = ARGV[1]
local FIRST_TASK_KEY = 17

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function stream_of(priority)
  return KEYS[11 + tonumber(priority)]
end

local function emit(event, id, status)
  redis.call('XADD', EVENTS, 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'event', event, 'task', id, 'status', status)
end

-- Move a task id between status indexes (the caller writes the status on the hash).
local function move_index(id, old, new)
  if old and STATUS_INDEX[old] then redis.call('ZREM', STATUS_INDEX[old], id) end
  redis.call('ZADD', STATUS_INDEX[new], 0, id)
end

-- Move a task between status indexes and record the new status on its hash.
local function set_status(task_key, id, old, new)
  move_index(id, old, new)
  redis.call('HSET', task_key, 'status', new)
end

-- Put a task on its priority stream as a fresh entry; returns the entry id.
local function enqueue(task_key, id, priority)
  local msg = redis.call('XADD', stream_of(priority), '*', 'id', id)
  redis.call('HSET', task_key, 'msg_id', msg)
  return msg
end

-- Append one JSON object to the JSON array kept in a hash field.
local function append_json(task_key, field, entry)
  local current = redis.call('HGET', task_key, field)
  if not current or current == '' then
    redis.call('HSET', task_key, field, '[' .. entry .. ']')
  else
    redis.call('HSET', task_key, field, string.sub(current, 1, -2) .. ',' .. entry .. ']')
  end
end

-- Mark a task terminal: status, completed_at, retention deadline, status index. `extra` (optional)
-- lists more field, value pairs, written in the same HSET.
local function finish_terminal(task_key, id, old, new, now, ttl_ms, extra)
  move_index(id, old, new)
  local hset = {'HSET', task_key, 'status', new, 'completed_at', now, 'msg_id', ''}
  if extra then
    for _, v in ipairs(extra) do hset[#hset + 1] = v end
  end
  redis.call(unpack(hset))
  redis.call('ZADD', RETENTION, now + tonumber(ttl_ms), id)
end

--[[ Deferred index writes: a batch script records each index change while it loops over
its tasks and writes them at the end with one variadic ZREM / ZADD per key (CHUNK values a call: Lua's
unpack takes a few thousand at most), instead of one ZREM + ZADD per task. The script is atomic, so
the end state is the same as writing them one by one, provided each task id moves at most once per
call (the batch scripts guarantee it: a task seen twice is skipped the second time). Kept to a few
closures: a script that uses them makes each one on every call. ]]
local CHUNK = 4000  -- values per variadic call (even: ZADD takes score, member pairs)
local DEFERRED = {ZREM = {}, ZADD = {}}  -- command -> key -> values
local TRIM_EVENTS = false  -- emit_batched() added events: flush_deferred() trims the stream

-- emit() for a batch script: the events stream is trimmed once, by flush_deferred(), instead of by
-- each XADD (MAXLEN ~ costs about 0.35 us an XADD). The same nodes go: approximate trimming drops whole
-- nodes from the head while the rest still holds MAXLEN entries, so after the call's last XADD and
-- after one XTRIM the stream is the same (up to the trim's limit of 100 nodes' entries per command,
-- far more than a call adds).
local function emit_batched(event, id, status)
  redis.call('XADD', EVENTS, '*', 'event', event, 'task', id, 'status', status)
  TRIM_EVENTS = true
end

-- Defer `cmd key a [b]`: defer('ZREM', key, id) or defer('ZADD', key, score, id).
local function defer(cmd, key, a, b)
  local t = DEFERRED[cmd][key]
  if not t then
    t = {}
    DEFERRED[cmd][key] = t
  end
  t[#t + 1] = a
  if b then t[#t + 1] = b end
end

-- move_index, written by flush_deferred(). (The score is the string '0': redis.call formats a Lua
-- number argument with snprintf %.17g, about 0.25 us each.)
local function defer_move(id, old, new)
  if old and STATUS_INDEX[old] then defer('ZREM', STATUS_INDEX[old], id) end
  defer('ZADD', STATUS_INDEX[new], '0', id)
end

-- Write every deferred ZREM, then every deferred ZADD, then trim the events stream if emit_batched()
-- added to it. The ZADD pairs go newest first: task ids are time-ordered and an index of up to 128
-- members is a listpack sorted by score then id, into which each insert walks from the head; a batch
-- of ids in time order walks past all the ids it added before (a score-0 index filled from empty:
-- 1.5 us per id in id order, 0.7 newest first).
local function flush_deferred()
  for key, values in pairs(DEFERRED.ZREM) do
    for i = 1, #values, CHUNK do
      redis.call('ZREM', key, unpack(values, i, math.min(i + CHUNK - 1, #values)))
    end
  end
  DEFERRED.ZREM = {}
  for key, values in pairs(DEFERRED.ZADD) do
    local n = #values
    local pairs_desc = {}
    for i = 1, n, 2 do
      pairs_desc[n - i], pairs_desc[n - i + 1] = values[i], values[i + 1]
    end
    for i = 1, n, CHUNK do
      redis.call('ZADD', key, unpack(pairs_desc, i, math.min(i + CHUNK - 1, n)))
    end
  end
  DEFERRED.ZADD = {}
  if TRIM_EVENTS then
    redis.call('XTRIM', EVENTS, 'MAXLEN', '~', EVENTS_MAXLEN)
    TRIM_EVENTS = false
  end
end

--[[ Unique tasks and debounce (docs/unique-and-debounce.md). The api places such a task in the queue
partition of its key, and writes on its hash `unique_lock` (the name of its unique key's string,
<p>:{q}:unique:<key>, which holds the holder's id), `unique_until` (started or finished) and
`unique_ttl_s`, or `debounce_lock` (<p>:{q}:debounce:<type>|<key>, holding the waiting task's id) and
`debounce_window_s`; its flow letters are u or d. A lock is deleted only while it still names the task
(a newer holder's, after the safety expiry, stays), by the script that starts or ends the task. ]]

-- ARGV[from..to] (field, value pairs) as a table: a flow task's extra fields, read by submit.lua.
local function argv_fields(from, to)
  local f = {}
  for i = from, to, 2 do f[ARGV[i]] = ARGV[i + 1] end
  return f
end

-- Delete `lock` if it still names task `id`.
local function flow_release(lock, id)
  if redis.call('GET', lock) == id then redis.call('DEL', lock) end
end

-- Take a unique key for task `id`; returns the id of the task holding it instead, or nil when taken.
-- A key whose holder is gone or has ended (a lock that outlived its task) is taken over.
local function unique_acquire(lock, id, ttl_s, task_prefix)
  local holder = redis.call('GET', lock)
  if holder then
    local status = redis.call('HGET', task_prefix .. holder, 'status')
    if status == 'pending' or status == 'scheduled' or status == 'processing' then return holder end
  end
  redis.call('SET', lock, id, 'EX', ttl_s)
  return nil
end

-- Join a debounce key: while its task still waits (scheduled), that task takes this submit's payload and
-- due time and its id is returned; else `id` becomes the key's task (nil: the caller creates it).
local function debounce_join(lock, id, ttl_s, task_prefix, payload, due)
  local waiting = redis.call('GET', lock)
  if waiting then
    local task_key = task_prefix .. waiting
    if redis.call('HGET', task_key, 'status') == 'scheduled' then
      redis.call('HSET', task_key, 'payload', payload, 'scheduled_for', due)
      redis.call('ZADD', SCHEDULED, due, waiting)
      redis.call('EXPIRE', lock, ttl_s)
      emit_batched('rescheduled', waiting, 'scheduled')
      return waiting
    end
  end
  redis.call('SET', lock, id, 'EX', ttl_s)
  return nil
end

-- submit.lua's part for a new task with extra fields `f` (argv_fields): take its unique key, or join its
-- debounce key. Returns the earlier task's id (false when this task is to be created), the reply's mark
-- ('u:' its unique key is held by that task, 'd:' debounced into it, '' none) and the task's due time
-- (a debounced task's: now + its window, on the Redis clock).
local function flow_submit(f, id, task_prefix, payload, due_ms, now)
  if f.unique_lock then
    local holder = unique_acquire(f.unique_lock, id, f.unique_ttl_s, task_prefix)
    if holder then return holder, 'u:', due_ms end
  end
  if f.debounce_lock then
    local window = tonumber(f.debounce_window_s)
    local due = string.format('%d', now + math.ceil(window * 1000))
    local waiting = debounce_join(f.debounce_lock, id, math.ceil(window) + 86400, task_prefix, payload, due)
    if waiting then return waiting, 'd:', due end
    return false, '', due
  end
  return false, '', due_ms
end

-- Release the unique and debounce keys task `id` holds, at its start (`started`) or its end: a unique key
-- held until `finished` stays through its runs and retries; a debounce key goes at the start (a later
-- submit opens a new window) or when the task ends without starting (cancelled).
local function flow_keys_release(task_key, id, flow, started)
  local u, d = string.find(flow, 'u', 1, true), string.find(flow, 'd', 1, true)
  if not u and not d then return end
  local h = redis.call('HMGET', task_key, 'unique_lock', 'unique_until', 'debounce_lock')
  if u and h[1] and (not started or h[2] == 'started') then flow_release(h[1], id) end
  if d and h[3] then flow_release(h[3], id) end
end

--[[ Flow hooks. A task that uses a unique key, debounce, a group or a type limit, or is a workflow's
step carries a `flow` field on its hash (written at submit; its value lists what it uses). The
transition scripts read that field with the fields they read anyway and call these hooks only when
it is set, so a task that uses none of it costs one absent field per read. Each capability writes its
part in its own functions (above their hook) and adds one call to the hooks below. ]]

-- A task's run began (start_entry: pending -> processing, once per run).
local function flow_started(task_key, id, flow)
  flow_keys_release(task_key, id, flow, true)
end

-- A task ended for good: `status` is completed, failed or cancelled (finish.lua, cancel.lua,
-- poison.lua).
local function flow_ended(task_key, id, flow, status)
  flow_keys_release(task_key, id, flow, false)
end

-- A run left a task for later without ending it: a retry or a give-back scheduled it again
-- (finish.lua).
local function flow_deferred(task_key, id, flow)
end

-- Start one delivered entry of `stream` on `consumer` (start.lua, take.lua). Returns the job's
-- fields {id, type, payload, timeout_s, attempts, max_retries, retry_backoff_s, due_ms, priority}, or
-- nil when the entry is not started: its task is gone or no longer waits on it (acknowledged and
-- deleted), or the partition is paused and the task pending (entry put back at its stream's tail).
-- With `row` (take.lua's reply row {entry id, stream priority, and 9 placeholders}), the fields go to
-- row[3..11] and row is returned: the reply row is built once. `now` is written as given (take.lua
-- passes it as a string: see defer_move). A redelivery of the same entry (after a crash) does not
-- count as a new attempt. The index move is deferred (the caller ends with flush_deferred()). A run
-- whose cancel was requested (cancel.lua) is not started: nil, its entry left pending (see reclaimer.py).
local function start_entry(task_key, id, msg, stream, group, consumer, paused, now, row)
  local h = redis.call('HMGET', task_key, 'status', 'msg_id', 'started_msg', 'priority', 'type', 'payload',
    'timeout_s', 'max_retries', 'retry_backoff_s', 'scheduled_for', 'created_at', 'attempts', 'cancel_requested',
    'traceparent', 'tracestate', 'flow')
  local status, msg_id, started_msg, priority = h[1], h[2], h[3], h[4]
  if h[13] then return nil end  -- asked to stop while it ran: never started again (the reclaimer ends it)
  if msg_id ~= msg or (status ~= 'pending' and status ~= 'processing') then
    redis.call('XACK', stream, group, msg)
    redis.call('XDEL', stream, msg)
    return nil
  end
  if paused and status == 'pending' then
    redis.call('XACK', stream, group, msg)
    redis.call('XDEL', stream, msg)
    enqueue(task_key, id, priority)
    return nil
  end
  local attempts = tonumber(h[12]) or 0
  if started_msg ~= msg then attempts = attempts + 1 end
  -- a one-digit count is written as its string (no number formatting in redis.call; same value)
  local written = attempts < 10 and string.char(48 + attempts) or attempts
  redis.call('HSET', task_key, 'status', 'processing', 'attempts', written, 'started_msg', msg, 'started_at', now,
    'worker', consumer)
  if status == 'pending' then
    defer_move(id, 'pending', 'processing')
    emit_batched('started', id, 'processing')
    if h[16] then flow_started(task_key, id, h[16]) end
  end
  local due = h[10]
  if not due or due == '' then due = h[11] end
  if row then
    row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10], row[11], row[12], row[13] =
      id, h[5], h[6], h[7] or '', attempts, h[8], h[9] or '', due, priority, h[14] or '', h[15] or ''
    return row
  end
  return {id, h[5], h[6], h[7] or '', attempts, h[8], h[9] or '', due, priority, h[14] or '', h[15] or ''}
end
