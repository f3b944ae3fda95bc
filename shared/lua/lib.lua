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

-- '<prefix>:{<tag>}:' of the partition: the group keys and the wake-up stream are under it (one slot
-- with KEYS).
local function group_base()
  return string.sub(SCHEDULED, 1, -10)  -- SCHEDULED is '<prefix>:{<tag>}:scheduled'
end

--[[ The scheduler's wake-ups (KeySchema.wakeups: '<prefix>:{<tag>}:wakeups', under group_base()): a
capped stream with one entry per script call that scheduled a task or held a group back until a time
(an event of status 'scheduled', or 'held'), written by emit() and emit_batched(). The scheduler's
watcher blocks on it rather than on the events stream, so the lifecycle events of tasks that run at
once (created, started, completed) do not wake it. ]]
local WOKEN = false  -- this call wrote its wake-up
local function wake_scheduler(event, status)
  if WOKEN or (status ~= 'scheduled' and event ~= 'held') then return end
  redis.call('XADD', group_base() .. 'wakeups', 'MAXLEN', '~', '100', '*', 'event', event)
  WOKEN = true
end

local function emit(event, id, status)
  redis.call('XADD', EVENTS, 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'event', event, 'task', id, 'status', status)
  wake_scheduler(event, status)
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

-- Put a task on its priority stream as a fresh entry; returns the entry id. `...`: more field-value
-- pairs written on its hash with the entry id.
local function enqueue(task_key, id, priority, ...)
  local msg = redis.call('XADD', stream_of(priority), '*', 'id', id)
  redis.call('HSET', task_key, 'msg_id', msg, ...)
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
  wake_scheduler(event, status)
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

-- Where a new task goes (submit.lua, workflow_submit.lua, a released workflow step): due later, on SCHEDULED (written at once with
-- `at_once`, else deferred); held by its group or type limits (`limited`: no entry until released);
-- else a fresh entry on its priority stream. Returns its status, the hash field that says where it is
-- and that field's value. `due` is the due time in ms, `due_text` the same as written.
local function place_new(id, priority, due, due_text, now, limited, at_once)
  if due > now then
    if at_once then redis.call('ZADD', SCHEDULED, due_text, id) else defer('ZADD', SCHEDULED, due_text, id) end
    return 'scheduled', 'scheduled_for', due_text
  elseif limited then
    return 'pending', 'msg_id', ''
  end
  return 'pending', 'msg_id', redis.call('XADD', stream_of(priority), '*', 'id', id)
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

--[[ Groups and type limits (docs/groups-and-limits.md). A task with a group, or of a type with a
limit, has 'g' in its `flow` and waits outside the streams until its limits admit it: in its group's
wait zset (gwait:<group>; '' for an ungrouped task of a limited type), ordered by priority then age.
It is released onto its priority stream (an ordinary entry from then on: leases, reclaims, cancel
and pause as for any task) by the script that frees room for it: a start (the stream window), an end
or retry of a task of its group or type (concurrency), or the scheduler's promote.lua at the time a
rate allows (groups:wake). Keys live in the partition's hash slot, under the prefix of SCHEDULED:
  gwait:<g> zset  waiting ids             grun:<g> set  released-and-not-ended ids (the count)
  grate:<g> zset  start times in the rate's window   trun:<t> / trate:<t>  the same per task type
  tblocked:<t> set groups waiting on a type's concurrency
  groups:ready zset  groups with a task that may be released, by (priority band, round-robin turn)
  groups:wake zset   groups held by a rate, by when it allows the next start (the scheduler wakes then)
  groups:recheck zset groups held by a concurrency, by when to look again in any case
  groups:released set released ids not yet started (at most GROUP_WINDOW: the rest wait, so a late
                     group's task is at most one round behind)
  groups:backlog hash waiting count per group (groups:waiting: their sum); groups:seq string the
                     round-robin turn counter
  limits:groups hash group -> 'concurrency|limit|per_ms' ('' = the default's), '*' -> the default
  limits:types hash  type -> 'concurrency|limit|per_ms'
A released task's hash keeps `released_at`: the clock (ms) its release was decided and counted at.
Every set is checked against its tasks' real states when it holds a group back, so a count never
stays up after its tasks are gone (a crashed worker's task counts until it is reclaimed and ends). ]]
local GROUP_WINDOW = 100  -- grouped entries released and not yet started, per partition
local GROUP_RECHECK_MS = 10000  -- a group held by a concurrency limit is looked at again after this
local WAIT_BAND = 4398046511104  -- 2^42: gwait score = (5 - priority) * WAIT_BAND + created_at (ms)
local READY_BAND = 17592186044416  -- 2^44: groups:ready score = band * READY_BAND + turn

-- A limit spec 'concurrency|limit|per_ms' as three numbers (nil: not set).
local function limit_spec(raw)
  if not raw then return nil, nil, nil end
  local c, n, per = string.match(raw, '^([^|]*)|([^|]*)|([^|]*)$')
  return tonumber(c), tonumber(n), tonumber(per)
end

-- Limits read in this call, by 'g:'..group and 't:'..type: {concurrency, limit, per_ms} (a batch
-- releases many tasks of a few groups; limits_set.lua changes them in a call of its own).
local LIMITS_READ = {}

-- The limits on group g: its override's parts, the queue's default for the parts it leaves out.
local function group_limits(base, g)
  if g == '' then return nil, nil, nil end
  local known = LIMITS_READ['g:' .. g]
  if known then return known[1], known[2], known[3] end
  local v = redis.call('HMGET', base .. 'limits:groups', g, '*')
  local c, n, per = limit_spec(v[1])
  local dc, dn, dper = limit_spec(v[2])
  if not c then c = dc end
  if not n then n, per = dn, dper end
  LIMITS_READ['g:' .. g] = {c, n, per}
  return c, n, per
end

-- The limits on task type t.
local function type_limits(base, t)
  local known = LIMITS_READ['t:' .. t]
  if known then return known[1], known[2], known[3] end
  local c, n, per = limit_spec(redis.call('HGET', base .. 'limits:types', t))
  LIMITS_READ['t:' .. t] = {c, n, per}
  return c, n, per
end

-- When a rate of n starts per `per` ms allows the next start: 0 when now. The rate is a sliding
-- window: the start times of the last n starts (zset `key`, at most n members, expiring after a
-- window), so no `per` ms ever hold more than n starts.
local function rate_wait(key, n, per, now)
  if not n then return 0 end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - per)
  if redis.call('ZCARD', key) < n then return 0 end
  return math.ceil(tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]) + per)
end

-- Task `id`'s start counted in the rate's window `key`. The key outlives its window by a second: a
-- script's expiry clock is its start time, earlier than the TIME its starts are counted at, so a key
-- expiring right at the window's end could vanish for a later script while its starts still count.
local function rate_take(key, n, per, now, id)
  if not n then return end
  redis.call('ZADD', key, now, id)
  if redis.call('ZCARD', key) > n then redis.call('ZREMRANGEBYRANK', key, 0, -n - 1) end
  redis.call('PEXPIRE', key, math.ceil(per) + 1000)
end

-- The size of a running set after dropping ids whose task neither waits nor runs any more.
local function running_checked(base, key)
  for _, id in ipairs(redis.call('SMEMBERS', key)) do
    local s = redis.call('HGET', base .. 'task:' .. id, 'status')
    if s ~= 'pending' and s ~= 'processing' then redis.call('SREM', key, id) end
  end
  return redis.call('SCARD', key)
end

-- Is the running set `key` at `c` or above (checked against its tasks before saying yes)?
local function at_limit(base, key, c)
  return c and redis.call('SCARD', key) >= c and running_checked(base, key) >= c
end

-- Add `d` to group g's waiting count (and to the partition's: the metrics read it).
local function backlog_add(base, g, d)
  redis.call('INCRBY', base .. 'groups:waiting', d)
  if redis.call('HINCRBY', base .. 'groups:backlog', g, d) <= 0 then
    redis.call('HDEL', base .. 'groups:backlog', g)
  end
end

-- Hold group g until `at` (ms): the scheduler (promote.lua) serves it again then. An earlier hold
-- is kept; a new or earlier hold that becomes the earliest of all emits 'held' for the group's next
-- task (the scheduler's watcher wakes for it, so it sleeps until exactly then).
local function group_hold(base, g, at, head)
  local wake = base .. 'groups:wake'
  if redis.call('ZADD', wake, 'LT', 'CH', at, g) == 1 and redis.call('ZRANGE', wake, 0, 0)[1] == g then
    emit('held', head, 'pending')
  end
end

-- Group g waits for a running task of its group or type to end (which serves it at once); it is
-- looked at again after GROUP_RECHECK_MS in any case (promote.lua), without waking the scheduler.
local function group_recheck(base, g, now)
  redis.call('ZADD', base .. 'groups:recheck', 'NX', now + GROUP_RECHECK_MS, g)
end

-- Put group g among the ready ones, its next task being of priority band `band` (5 - priority): at
-- the back of that band, or where it already is if that is ahead.
local function group_ready_band(base, g, band)
  local turn = redis.call('INCR', base .. 'groups:seq')
  redis.call('ZADD', base .. 'groups:ready', 'LT', band * READY_BAND + turn, g)
end

-- Put group g among the ready ones if it has a waiting task (see group_ready_band).
local function group_ready(base, g)
  local head = redis.call('ZRANGE', base .. 'gwait:' .. g, 0, 0, 'WITHSCORES')
  if #head > 0 then group_ready_band(base, g, math.floor(tonumber(head[2]) / WAIT_BAND)) end
end

-- group_ready, unless g is among the ready ones already (one read instead of three).
local function group_ready_unless(base, g)
  if not redis.call('ZSCORE', base .. 'groups:ready', g) then group_ready(base, g) end
end

-- Release group g's next waiting task onto its priority stream if its group's and its type's limits
-- allow: true (and the band of the task after it, if any) when released; false when held (registered
-- where its wake-up comes from); nil when nothing waits. Ids whose task no longer waits (cancelled
-- meanwhile) are dropped on the way.
local function group_release(base, g, now)
  local wait = base .. 'gwait:' .. g
  while true do
    local two = redis.call('ZRANGE', wait, 0, 1, 'WITHSCORES')
    local head = two[1]
    if not head then return nil end
    local task_key = base .. 'task:' .. head
    local h = redis.call('HMGET', task_key, 'status', 'msg_id', 'type', 'priority')
    if h[1] ~= 'pending' or (h[2] and h[2] ~= '') then
      redis.call('ZREM', wait, head)
      backlog_add(base, g, -1)
    else
      local c, n, per = group_limits(base, g)
      local run, rate = base .. 'grun:' .. g, base .. 'grate:' .. g
      if at_limit(base, run, c) then
        group_recheck(base, g, now)
        return false
      end
      local at = rate_wait(rate, n, per, now)
      if at > 0 then
        group_hold(base, g, at, head)
        return false
      end
      local tc, tn, tper = type_limits(base, h[3])
      local trun, trate = base .. 'trun:' .. h[3], base .. 'trate:' .. h[3]
      if at_limit(base, trun, tc) then
        redis.call('SADD', base .. 'tblocked:' .. h[3], g)
        group_recheck(base, g, now)
        return false
      end
      at = rate_wait(trate, tn, tper, now)
      if at > 0 then
        group_hold(base, g, at, head)
        return false
      end
      redis.call('ZREM', wait, head)
      backlog_add(base, g, -1)
      rate_take(rate, n, per, now, head)
      rate_take(trate, tn, tper, now, head)
      redis.call('SADD', run, head)
      if tc or tn then redis.call('SADD', trun, head) end
      redis.call('SADD', base .. 'groups:released', head)
      enqueue(task_key, head, h[4], 'released_at', now)  -- the clock the limits decided on
      return true, two[4] and math.floor(tonumber(two[4]) / WAIT_BAND)
    end
  end
end

-- Release ready groups' tasks, round-robin, while the window (widened by `more`, a taker's free
-- slots) has room. The rates count each release at the clock read here, not at the calling script's
-- start: a script that stored a large batch first releases milliseconds after it began, and a window
-- counted from its start would open again that much early.
local function group_pump(base, more)
  local now = now_ms()
  local room = GROUP_WINDOW + (more or 0) - redis.call('SCARD', base .. 'groups:released')
  while room > 0 do
    local top = redis.call('ZPOPMIN', base .. 'groups:ready')
    if #top == 0 then return end
    local released, band = group_release(base, top[1], now)
    if released then
      room = room - 1
      if band then group_ready_band(base, top[1], band) end
    end
  end
end

-- A pending task with 'g' in its flow joins group g's waiting tasks (submit.lua, promote.lua; the
-- caller then runs group_pump once for all it admitted).
local function group_admit(base, id, g, priority, created)
  local band = 5 - tonumber(priority)
  redis.call('ZADD', base .. 'gwait:' .. g, band * WAIT_BAND + tonumber(created), id)
  backlog_add(base, g, 1)
  local turn = redis.call('ZSCORE', base .. 'groups:ready', g)
  if not turn then
    group_ready(base, g)  -- its head may be an older task of a higher priority
  elseif band < math.floor(tonumber(turn) / READY_BAND) then
    group_ready_band(base, g, band)
  end
end

-- A new task under a group or a type limit (submit.lua, fire.lua, a released workflow step): an
-- ungrouped one gets 'g' in its flow (once: a retried workflow's step is released again); a pending one
-- waits for its limits. `g` is its group ('' for none).
local function group_submitted(task_key, id, status, g, priority, now)
  if g == '' then
    local flow = redis.call('HGET', task_key, 'flow') or ''
    if not string.find(flow, 'g', 1, true) then redis.call('HSET', task_key, 'flow', flow .. 'g') end
  end
  if status == 'pending' then group_admit(group_base(), id, g, priority, now) end
end

-- Is task type t under a type limit in this partition (limits:types)? A task created by a script other
-- than submit.lua (fire.lua, a workflow's step) then waits for its limits as a submitted one does.
local function type_limited(t)
  return redis.call('HEXISTS', group_base() .. 'limits:types', t) == 1
end

-- Groups held back that are due (promote.lua): ready again, then served with the tasks the call
-- `admitted` (true when it did). Returns the next hold's
-- time (ms), or -1 when none. A full window is checked against its tasks first (an id whose task no
-- longer waits on a stream entry leaves it), so the window cannot stay full of tasks that are gone.
local function group_wake(now, admitted)
  local base = group_base()
  local released = base .. 'groups:released'
  local pump = admitted
  if redis.call('SCARD', released) >= GROUP_WINDOW then
    for _, id in ipairs(redis.call('SMEMBERS', released)) do
      local h = redis.call('HMGET', base .. 'task:' .. id, 'status', 'msg_id')
      if h[1] ~= 'pending' or not h[2] or h[2] == '' then pump = redis.call('SREM', released, id) == 1 or pump end
    end
  end
  local wake = base .. 'groups:wake'
  for _, key in ipairs({wake, base .. 'groups:recheck'}) do
    local due = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, 1000)  -- the rest: the next call
    if #due > 0 then
      redis.call('ZREM', key, unpack(due))
      for _, g in ipairs(due) do group_ready(base, g) end
      pump = true
    end
  end
  if pump then group_pump(base) end
  local first = redis.call('ZRANGE', wake, 0, 0, 'WITHSCORES')
  if #first > 0 then return tonumber(first[2]) end
  return -1
end

-- flow_started's part: the task left the window and runs (counted: a revived task was not released).
local function group_started(task_key, id)
  local base = group_base()
  if redis.call('SREM', base .. 'groups:released', id) == 0 then  -- released: counted already
    redis.call('SADD', base .. 'grun:' .. (redis.call('HGET', task_key, 'group') or ''), id)
  end
  group_pump(base)
end

-- flow_ended's and flow_deferred's part: the task no longer waits nor runs; its group and type get
-- its slot back, and whoever waited on it is served.
local function group_left(task_key, id)
  local base = group_base()
  local h = redis.call('HMGET', task_key, 'group', 'type')
  local g = h[1] or ''
  if redis.call('ZREM', base .. 'gwait:' .. g, id) == 1 then backlog_add(base, g, -1) end
  redis.call('SREM', base .. 'groups:released', id)
  if redis.call('SREM', base .. 'grun:' .. g, id) == 1 then
    redis.call('ZREM', base .. 'groups:recheck', g)  -- served now, if it waited for this slot
    group_ready_unless(base, g)
  end
  if redis.call('SREM', base .. 'trun:' .. h[2], id) == 1 then
    local blocked = base .. 'tblocked:' .. h[2]
    for _, other in ipairs(redis.call('SMEMBERS', blocked)) do group_ready(base, other) end
    redis.call('DEL', blocked)
  end
  group_pump(base)
end

--[[ Workflows (docs/workflows.md). A step is a task whose `flow` has the letter w; its hash also holds
`workflow` (the workflow's id), `step` (its name), `parent_ids` and `parent_names` (space-separated, in
the same order), `children` (ids, space-separated), `waiting_on` (parents not completed yet) and, for a
step not queued yet, `wf_due` / `wf_delay` (its scheduled_for and delay, applied when it is released).
A step whose parents have not all completed is `waiting` (index idx:status:waiting, no stream entry); a
step that will never run because an ancestor failed or was cancelled ends `skipped` (idx:status:skipped).
The workflow's hash (wf:<id>) counts its steps still `open` (not ended) and the `bad` ones (failed,
cancelled, skipped). Every key is built from a task key's '<prefix>:{<tag>}:' (wf_base), so a workflow
and all its steps stay in one partition's hash slot. ]]
local WF_ON_FAILURE = 'on_failure'  -- the `step` of a workflow's on_failure task (not one of its steps)

-- '<prefix>:{<tag>}:' of a task key (task ids hold no ':').
local function wf_base(task_key)
  return string.match(task_key, '^(.*:)task:[^:]*$')
end

-- The JSON object {parent name: its result} that a released step's handler reads as ctx.parents.
-- `known` (optional): results already read, by parent id (a fan-out's children share their parent).
local function wf_parent_results(base, ids, names, known)
  local names_t, parts, i = {}, {}, 0
  for name in string.gmatch(names or '', '%S+') do names_t[#names_t + 1] = name end
  for pid in string.gmatch(ids or '', '%S+') do
    i = i + 1
    local result = known and known[pid]
    if not result then
      result = redis.call('HGET', base .. 'task:' .. pid, 'result')
      if not result or result == '' then result = 'null' end
      if known then known[pid] = result end
    end
    parts[#parts + 1] = cjson.encode(names_t[i]) .. ':' .. result
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

-- Queue a waiting step (its parents all completed) or the on_failure task: on its stream (place_new),
-- or scheduled while its scheduled_for or delay is still ahead. `parents` becomes its ctx.parents. `pre`
-- (optional): its {priority, wf_due, wf_delay, type} already read. `moved` (optional): a list the ids
-- queued are added to, for the caller to move out of the waiting index with one variadic write each
-- (wf_moved); without it they are moved here. A task of a type under a limit gets 'g' in its flow and, when
-- pending, joins the type's waiting tasks instead of its stream (as submit.lua does): then true is returned
-- and the caller runs group_pump once for all it released.
local function wf_release(base, task_key, id, parents, now, pre, moved)
  local h = pre or redis.call('HMGET', task_key, 'priority', 'wf_due', 'wf_delay', 'type')
  local due = math.max(tonumber(h[2]) or 0, now + (tonumber(h[3]) or 0))
  local limited = type_limited(h[4] or '')
  local status, where, at = place_new(id, h[1], due, string.format('%d', due), now, limited, true)
  redis.call('HSET', task_key, 'status', status, where, at, 'parents_json', parents, 'waiting_on', 0)
  if limited then group_submitted(task_key, id, status, '', h[1], now) end  -- scheduled: promote.lua admits it
  if status == 'scheduled' then
    redis.call('ZREM', base .. 'idx:status:waiting', id)
    redis.call('ZADD', STATUS_INDEX.scheduled, 0, id)
    emit('scheduled', id, 'scheduled')
    return false
  end
  if moved then
    moved[#moved + 1] = id
  else
    redis.call('ZREM', base .. 'idx:status:waiting', id)
    redis.call('ZADD', STATUS_INDEX.pending, 0, id)
  end
  emit('released', id, 'pending')
  return limited
end

-- The index writes wf_release left to its caller: `moved` (at most a workflow's 1,000 steps) out of the
-- waiting index and into the pending one.
local function wf_moved(base, moved)
  if #moved == 0 then return end
  redis.call('ZREM', base .. 'idx:status:waiting', unpack(moved))
  local scored = {}
  for i, id in ipairs(moved) do scored[2 * i - 1], scored[2 * i] = '0', id end
  redis.call('ZADD', STATUS_INDEX.pending, unpack(scored))
end

-- Mark one waiting step skipped (never queued). Returns its children (space-separated ids), or nil when it
-- was not waiting.
local function wf_skip_one(base, id, now)
  local key = base .. 'task:' .. id
  local h = redis.call('HMGET', key, 'status', 'children')
  if h[1] ~= 'waiting' then return nil end
  redis.call('HSET', key, 'status', 'skipped', 'completed_at', now, 'wf_closed', '1')
  redis.call('ZREM', base .. 'idx:status:waiting', id)
  redis.call('ZADD', base .. 'idx:status:skipped', 0, id)
  emit('skipped', id, 'skipped')
  return h[2] or ''
end

-- Skip every waiting descendant of the steps in `children` (ids, space-separated). Returns how many.
local function wf_skip(base, children, now)
  local todo, n = {}, 0
  for c in string.gmatch(children or '', '%S+') do todo[#todo + 1] = c end
  while #todo > 0 do
    local grandchildren = wf_skip_one(base, table.remove(todo), now)
    if grandchildren then
      n = n + 1
      for c in string.gmatch(grandchildren, '%S+') do todo[#todo + 1] = c end
    end
  end
  return n
end

-- Add `name: value` (value already JSON) to the JSON object kept in a hash field.
local function wf_json_put(key, field, name, value)
  local current = redis.call('HGET', key, field)
  local pair = cjson.encode(name) .. ':' .. value
  if not current or current == '' or current == '{}' then
    redis.call('HSET', key, field, '{' .. pair .. '}')
  else
    redis.call('HSET', key, field, string.sub(current, 1, -2) .. ',' .. pair .. '}')
  end
end

-- End a workflow whose steps have all ended: completed, failed (a step failed, was cancelled or skipped)
-- or cancelled (its cancel was asked). Its record is kept for its ttl_ms (wf:retention; the janitor's
-- prune removes it with its steps); on failure its on_failure task is queued, with the failed steps'
-- outcomes as ctx.parents; `workflow.<status>` is emitted (the notifier sends it to the workflow's webhook).
local function wf_end(base, wf_key, wid, now)
  local w = redis.call('HMGET', wf_key, 'status', 'bad', 'cancelling', 'ttl_ms', 'on_failure_id', 'failed_json')
  local status = 'completed'
  if w[3] == '1' then status = 'cancelled' elseif (tonumber(w[2]) or 0) > 0 then status = 'failed' end
  redis.call('HSET', wf_key, 'status', status, 'completed_at', now)
  redis.call('ZREM', base .. 'wf:idx:' .. (w[1] or 'running'), wid)
  redis.call('ZADD', base .. 'wf:idx:' .. status, 0, wid)
  redis.call('ZADD', base .. 'wf:retention', now + (tonumber(w[4]) or 0), wid)
  redis.call('HINCRBY', STATS, 'workflows_' .. status .. '_total', 1)
  if w[5] and w[5] ~= '' then
    local key = base .. 'task:' .. w[5]
    if status == 'failed' and redis.call('HGET', key, 'status') == 'waiting' then
      if wf_release(base, key, w[5], (w[6] and w[6] ~= '') and w[6] or '{}', now) then group_pump(base) end
    else
      wf_skip_one(base, w[5], now)
    end
  end
  redis.call('XADD', EVENTS, 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'event', 'workflow.' .. status, 'task', wid,
    'status', status, 'workflow', wid)
end

-- Close `closed` steps of a running workflow (`bad` of them failed, cancelled or skipped); the workflow
-- ends when none is left open.
local function wf_close(base, wf_key, wid, closed, bad, now)
  if bad > 0 then redis.call('HINCRBY', wf_key, 'bad', bad) end
  if redis.call('HINCRBY', wf_key, 'open', -closed) <= 0 then wf_end(base, wf_key, wid, now) end
end

-- A step ended for good (flow_ended). Completed: each waiting child whose last parent it was is queued.
-- Failed or cancelled: its waiting descendants are skipped and its outcome recorded for on_failure. Each
-- step is counted once (`wf_closed`): an outcome recorded again after a hand retry of its task changes
-- nothing here (POST /api/workflows/{id}/retry re-runs steps).
local function workflow_step_ended(task_key, id, status)
  local h = redis.call('HMGET', task_key, 'workflow', 'children', 'step', 'wf_closed', 'error')
  if not h[1] or h[4] == '1' then return end
  redis.call('HSET', task_key, 'wf_closed', '1')
  local base = wf_base(task_key)
  local wf_key = base .. 'wf:' .. h[1]
  if h[3] == WF_ON_FAILURE or redis.call('HGET', wf_key, 'status') ~= 'running' then return end
  local now = now_ms()
  if status == 'completed' then
    local known, moved, admitted = {}, {}, false
    for cid in string.gmatch(h[2] or '', '%S+') do
      local key = base .. 'task:' .. cid
      -- the parents' lists only on release: a fan-in's are long, and read once, not once per parent
      local c = redis.call('HMGET', key, 'status', 'waiting_on', 'priority', 'wf_due', 'wf_delay', 'type')
      if c[1] == 'waiting' then
        local left = (tonumber(c[2]) or 1) - 1
        if left > 0 then
          redis.call('HSET', key, 'waiting_on', left)
        else
          local p = redis.call('HMGET', key, 'parent_ids', 'parent_names')
          local results = wf_parent_results(base, p[1], p[2], known)
          admitted = wf_release(base, key, cid, results, now, {c[3], c[4], c[5], c[6]}, moved) or admitted
        end
      end
    end
    wf_moved(base, moved)
    if admitted then group_pump(base) end  -- type limits: see wf_release
    wf_close(base, wf_key, h[1], 1, 0, now)
  else
    wf_json_put(wf_key, 'failed_json', h[3], cjson.encode({status = status, error = h[5] or ''}))
    local skipped = wf_skip(base, h[2], now)
    wf_close(base, wf_key, h[1], 1 + skipped, 1 + skipped, now)
  end
end

--[[ Flow hooks. A task that uses a unique key, debounce, a group or a type limit, or is a workflow's
step carries a `flow` field on its hash (written at submit; its value lists what it uses). The
transition scripts read that field with the fields they read anyway and call these hooks only when
it is set, so a task that uses none of it costs one absent field per read. Each capability writes its
part in its own functions (above their hook) and adds one call to the hooks below. ]]

-- A task's run began (start_entry: pending -> processing, once per run).
local function flow_started(task_key, id, flow)
  flow_keys_release(task_key, id, flow, true)
  if string.find(flow, 'g', 1, true) then group_started(task_key, id) end
end

-- A task ended for good: `status` is completed, failed or cancelled (finish.lua, cancel.lua,
-- poison.lua).
local function flow_ended(task_key, id, flow, status)
  flow_keys_release(task_key, id, flow, false)
  if string.find(flow, 'w', 1, true) then workflow_step_ended(task_key, id, status) end
  if string.find(flow, 'g', 1, true) then group_left(task_key, id) end
end

-- A run left a task for later without ending it: a retry or a give-back scheduled it again
-- (finish.lua).
local function flow_deferred(task_key, id, flow)
  if string.find(flow, 'g', 1, true) then group_left(task_key, id) end
end

-- Start one delivered entry of `stream` on `consumer` (start.lua, take.lua). Returns the job's
-- fields {id, type, payload, timeout_s, attempts, max_retries, retry_backoff_s, due_ms, priority,
-- traceparent, tracestate, and for a released workflow step its parents' results (JSON)}, or
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
  -- a workflow step's ctx.parents (JSON), read only for a step: an absent field costs a whole hash scan
  local parents = h[16] and string.find(h[16], 'w', 1, true) and redis.call('HGET', task_key, 'parents_json') or nil
  if row then
    row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10], row[11], row[12], row[13] =
      id, h[5], h[6], h[7] or '', attempts, h[8], h[9] or '', due, priority, h[14] or '', h[15] or ''
    if parents then row[14] = parents end
    return row
  end
  return {id, h[5], h[6], h[7] or '', attempts, h[8], h[9] or '', due, priority, h[14] or '', h[15] or '', parents}
end
