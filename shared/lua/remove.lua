--[[ remove.lua: delete finished tasks and every index entry of them; trim dead letters.

A removed task's webhook records go with it: its attempt log, and each of its webhook messages (its
hash's `webhook_delivery`, the latest, and `webhook_earlier`, those before it) that has ended
(delivered, failed, gone). A message still due (pending or retrying: in webhooks:due) is left to
run to its end; webhook_record.lua then deletes it, and writes no log, as its task is gone. Keys
are built from the prefixes given (same hash tag as KEYS).

Mode 'delete' (DELETE /api/tasks/{id}): one task, if finished.
  KEYS[17]  task hash     KEYS[18]  its type index
  ARGV[1]  events MAXLEN    ARGV[2]  'delete'    ARGV[3]  task id
  ARGV[4]  webhook message key prefix    ARGV[5]  delivery log key prefix
  Returns: {1, status} when removed, {0, status} when not finished, {0, ''} when the task does not
  exist (its index entries are removed anyway), {0, status, workflow id} when it belongs to a workflow
  that still exists (nothing written: its tasks are removed with the workflow, prune_workflows).
Mode 'prune' (the janitor, one partition, docs/scaling-out.md: Retention): at most `budget` tasks and `budget`
dead letters a call, oldest first, in this order: tasks past their retention deadline (the retention
zset: finish time + STREAMQ_RESULT_TTL_S, the longest anything is kept), then per finished status
(completed, failed, cancelled) the lowest ids beyond its count bound, then those of its lowest ids
that finished longer ago than its age bound; then dead letters beyond their count bound and older
than their age bound (a dead letter's entry id is the time it was added). A task whose `keep_s` has
not run out since it finished is kept: the count walk passes over it (the status's newest tasks make
up the rest of its count), the age bound and the deadline still remove it. The count walk examines at
most `budget` ids a call, from a cursor (kept tasks gather at the low end of the index), so any number
of kept tasks never stalls it. Only a task whose hash says
completed, failed or cancelled is removed: pending, scheduled and processing tasks are in other
indexes and are never read. Task keys are built from the prefixes (same hash tag as KEYS).
  ARGV[1]  events MAXLEN    ARGV[2]  'prune'    ARGV[3]  task hash prefix    ARGV[4]  type index prefix
  ARGV[5]  budget
  ARGV[6..13]  age (ms) and count of completed, failed, cancelled, dead letters (-1: no such bound)
  ARGV[14..16]  where the count walks of completed, failed, cancelled start: '-' (lowest id) or an id
  (the walk goes on above it: the previous call's cursor)
  ARGV[17]  webhook message key prefix    ARGV[18]  delivery log key prefix
  Returns: {tasks removed, dead letters removed, 1 when a count walk stopped at `budget` ids with tasks
  still beyond its bound (else 0), the three walks' cursors}
Writes start with a DEL or XDEL, which Redis allows while it refuses writes for memory (noeviction):
pruning frees memory when it is most needed. Each removal emits a 'deleted' event.
]]
local WEBHOOK_PREFIX, LOG_PREFIX = ARGV[17], ARGV[18]
if ARGV[2] == 'delete' then WEBHOOK_PREFIX, LOG_PREFIX = ARGV[4], ARGV[5] end
local DUE = {pending = true, retrying = true}

-- Delete a removed task's attempt log and those of its webhook messages that have ended: `listed` is
-- its hash's webhook_earlier (ids separated by spaces), `latest` its webhook_delivery.
local function remove_webhooks(id, listed, latest)
  redis.call('DEL', LOG_PREFIX .. id)
  local ids = {}
  for d in string.gmatch(listed or '', '%S+') do ids[d] = true end
  if latest and latest ~= '' then ids[latest] = true end
  for d in pairs(ids) do
    local key = WEBHOOK_PREFIX .. d
    if not DUE[redis.call('HGET', key, 'status') or ''] then redis.call('DEL', key) end
  end
end

-- Delete one task whose hash says `status` (a finished one): its dead letter, hash, index entries and
-- webhook records.
local function remove_task(task_key, type_key, id, status, dead_id, listed, latest)
  remove_webhooks(id, listed, latest)
  if dead_id and dead_id ~= '' then redis.call('XDEL', DEAD, dead_id) end
  redis.call('DEL', task_key)
  redis.call('ZREM', RETENTION, id)
  redis.call('ZREM', type_key, id)
  redis.call('ZREM', STATUS_INDEX[status], id)
end

local FINISHED = {completed = true, failed = true, cancelled = true}

if ARGV[2] == 'delete' then
  local task_key, type_key, id = KEYS[17], KEYS[18], ARGV[3]
  local h = redis.call('HMGET', task_key, 'status', 'dead_id', 'webhook_earlier', 'webhook_delivery', 'workflow')
  local status = h[1]
  -- a workflow's task goes with its workflow (prune_workflows): deleting it alone would stall the workflow
  if status and h[5] and redis.call('EXISTS', wf_base(task_key) .. 'wf:' .. h[5]) == 1 then
    return {0, status, h[5]}
  end
  if status and not FINISHED[status] then return {0, status} end
  if status then
    remove_task(task_key, type_key, id, status, h[2], h[3], h[4])
    emit('deleted', id, status)
    return {1, status}
  end
  redis.call('DEL', task_key, LOG_PREFIX .. id)
  redis.call('ZREM', RETENTION, id)
  redis.call('ZREM', type_key, id)
  for _, key in pairs(STATUS_INDEX) do redis.call('ZREM', key, id) end
  return {0, ''}
end

local task_prefix, type_prefix, budget = ARGV[3], ARGV[4], tonumber(ARGV[5])
local WF_BASE = string.sub(task_prefix, 1, -6)  -- '<prefix>:{<tag>}:' of '<prefix>:{<tag>}:task:'
local now = now_ms()
local removed = 0

-- Remove the task `id` if its hash says it is finished (and, with `only`, in that status) and, with
-- `finished_before`, it finished before that time and, with `spare_kept`, its keep_s has run out.
-- Returns 'removed', 'gone' (no hash: what still names it is dropped), 'kept' (spared for its keep_s)
-- or false (not this call's to remove).
local function prune_one(id, only, finished_before, spare_kept)
  local task_key = task_prefix .. id
  local h = redis.call('HMGET', task_key, 'status', 'dead_id', 'type', 'completed_at', 'keep_s',
    'webhook_earlier', 'webhook_delivery', 'workflow')
  local status = h[1]
  if h[8] and redis.call('EXISTS', WF_BASE .. 'wf:' .. h[8]) == 1 then
    redis.call('ZREM', RETENTION, id)  -- a workflow's step goes with its workflow (prune_workflows)
    return false
  end
  if not status then  -- hash gone (deleted by hand): drop what still names it
    redis.call('ZREM', RETENTION, id)
    redis.call('DEL', LOG_PREFIX .. id)
    if only then redis.call('ZREM', STATUS_INDEX[only], id) end
    return 'gone'
  end
  if not FINISHED[status] or (only and status ~= only) then return false end
  local finished = tonumber(h[4]) or 0
  if finished_before and finished >= finished_before then return false end
  if spare_kept and h[5] and finished + (tonumber(h[5]) or 0) * 1000 > now then return 'kept' end
  remove_task(task_key, type_prefix .. (h[3] or ''), id, status, h[2], h[6], h[7])
  emit_batched('deleted', id, status)
  removed = removed + 1
  return 'removed'
end

-- Count walk of one status: remove its lowest ids above `from` that are not kept until the index
-- holds `count`, examining at most `budget` ids. Returns where it stopped and whether it stopped at
-- that limit with tasks still beyond the bound.
local function count_walk(index, status, count, from)
  local excess, walked = redis.call('ZCARD', index) - count, 0
  while excess > 0 and removed < budget and walked < budget do
    local start = from == '-' and '-' or ('(' .. from)
    local n = math.min(excess, budget - removed, budget - walked)
    local ids = redis.call('ZRANGE', index, start, '+', 'BYLEX', 'LIMIT', 0, n)
    if #ids == 0 then return from, false end
    for _, id in ipairs(ids) do
      local done = prune_one(id, status, nil, true)
      if done == 'removed' or done == 'gone' then excess = excess - 1 end
      walked, from = walked + 1, id
    end
  end
  return from, excess > 0 and walked >= budget
end

-- past the retention deadline
for _, id in ipairs(redis.call('ZRANGEBYSCORE', RETENTION, '-inf', now, 'LIMIT', 0, budget)) do
  prune_one(id)
end

-- Does a task of a workflow (its ids: `ids`, space-separated) still wait or run? Its on_failure task,
-- queued when the workflow ended, may.
local UNFINISHED = {pending = true, scheduled = true, processing = true}
local function wf_unfinished(ids)
  for id in string.gmatch(ids, '%S+') do
    if UNFINISHED[redis.call('HGET', task_prefix .. id, 'status') or ''] then return true end
  end
  return false
end

-- Workflows past their retention deadline (ended + STREAMQ_RESULT_TTL_S), each with all its steps
-- (tasks), whatever their status (skipped steps are in no index the passes above read); a step's
-- removal counts toward `budget`, a workflow is removed whole. One with a task still pending,
-- scheduled or processing is kept another retention period (nothing unfinished is deleted).
local function prune_workflows()
  local wf_retention = WF_BASE .. 'wf:retention'
  for _, wid in ipairs(redis.call('ZRANGEBYSCORE', wf_retention, '-inf', now, 'LIMIT', 0, budget)) do
    if removed >= budget then return end
    local wf_key = WF_BASE .. 'wf:' .. wid
    local w = redis.call('HMGET', wf_key, 'status', 'step_ids', 'on_failure_id', 'ttl_ms')
    local ids = (w[2] or '') .. ' ' .. (w[3] or '')
    if wf_unfinished(ids) then
      redis.call('ZADD', wf_retention, now + (tonumber(w[4]) or 0), wid)
    else
      for id in string.gmatch(ids, '%S+') do
        local task_key = task_prefix .. id
        local h = redis.call('HMGET', task_key, 'status', 'dead_id', 'type', 'webhook_earlier', 'webhook_delivery')
        if h[1] then
          remove_webhooks(id, h[4], h[5])
          if h[2] and h[2] ~= '' then redis.call('XDEL', DEAD, h[2]) end
          redis.call('DEL', task_key)
          redis.call('ZREM', RETENTION, id)
          redis.call('ZREM', type_prefix .. (h[3] or ''), id)
          redis.call('ZREM', STATUS_INDEX[h[1]] or (WF_BASE .. 'idx:status:' .. h[1]), id)
          emit_batched('deleted', id, h[1])
          removed = removed + 1
        end
      end
      redis.call('DEL', wf_key)
      redis.call('ZREM', wf_retention, wid)
      redis.call('ZREM', WF_BASE .. 'wf:idx', wid)
      redis.call('ZREM', WF_BASE .. 'wf:idx:' .. (w[1] or ''), wid)
    end
  end
end
prune_workflows()

local STATUSES = {'completed', 'failed', 'cancelled'}
local cursors, more = {}, 0
for i, status in ipairs(STATUSES) do
  local age, count = tonumber(ARGV[4 + 2 * i]), tonumber(ARGV[5 + 2 * i])
  local index = STATUS_INDEX[status]
  cursors[i] = ARGV[13 + i] or '-'
  if count >= 0 and removed < budget then
    local stopped_full
    cursors[i], stopped_full = count_walk(index, status, count, cursors[i])
    if stopped_full then more = 1 end
  end
  if age >= 0 and removed < budget then
    -- the lowest ids (oldest submitted), those among them that finished before the bound
    for _, id in ipairs(redis.call('ZRANGE', index, 0, budget - removed - 1)) do
      prune_one(id, status, now - age)
    end
  end
end

local dead_age, dead_count = tonumber(ARGV[12]), tonumber(ARGV[13])
local dead = {}
if dead_count >= 0 then
  local excess = math.min(redis.call('XLEN', DEAD) - dead_count, budget)
  if excess > 0 then
    for _, entry in ipairs(redis.call('XRANGE', DEAD, '-', '+', 'COUNT', excess)) do dead[#dead + 1] = entry[1] end
  end
end
if dead_age >= 0 and #dead < budget then
  local before = string.format('%d', now - dead_age - 1)
  local from = #dead > 0 and ('(' .. dead[#dead]) or '-'
  for _, entry in ipairs(redis.call('XRANGE', DEAD, from, before, 'COUNT', budget - #dead)) do
    dead[#dead + 1] = entry[1]
  end
end
if #dead > 0 then redis.call('XDEL', DEAD, unpack(dead)) end
flush_deferred()
return {removed, #dead, more, cursors[1], cursors[2], cursors[3]}
