--[[ remove.lua: delete finished tasks and every index entry of them; trim dead letters.

Mode 'delete' (DELETE /api/tasks/{id}): one task, if finished.
  KEYS[17]  task hash     KEYS[18]  its type index
  ARGV[1]  events MAXLEN    ARGV[2]  'delete'    ARGV[3]  task id
  Returns: {1, status} when removed, {0, status} when not finished, {0, ''} when the task does not
  exist (its index entries are removed anyway).
Mode 'prune' (the janitor, one partition, README: Retention): at most `budget` tasks and `budget`
dead letters a call, oldest first, in this order: tasks past their retention deadline (the retention
zset: finish time + STREAMQ_RESULT_TTL_S, the longest anything is kept), then per finished status
(completed, failed, cancelled) the lowest ids beyond its count bound, then those of its lowest ids
that finished longer ago than its age bound; then dead letters beyond their count bound and older
than their age bound (a dead letter's entry id is the time it was added). Only a task whose hash says
completed, failed or cancelled is removed: pending, scheduled and processing tasks are in other
indexes and are never read. Task keys are built from the prefixes (same hash tag as KEYS).
  ARGV[1]  events MAXLEN    ARGV[2]  'prune'    ARGV[3]  task hash prefix    ARGV[4]  type index prefix
  ARGV[5]  budget
  ARGV[6..13]  age (ms) and count of completed, failed, cancelled, dead letters (-1: no such bound)
  Returns: {tasks removed, dead letters removed}
Writes start with a DEL or XDEL, which Redis allows while it refuses writes for memory (noeviction):
pruning frees memory when it is most needed. Each removal emits a 'deleted' event.
]]
-- Delete one task whose hash says `status` (a finished one): its dead letter, hash and index entries.
local function remove_task(task_key, type_key, id, status, dead_id)
  if dead_id and dead_id ~= '' then redis.call('XDEL', DEAD, dead_id) end
  redis.call('DEL', task_key)
  redis.call('ZREM', RETENTION, id)
  redis.call('ZREM', type_key, id)
  redis.call('ZREM', STATUS_INDEX[status], id)
end

local FINISHED = {completed = true, failed = true, cancelled = true}

if ARGV[2] == 'delete' then
  local task_key, type_key, id = KEYS[17], KEYS[18], ARGV[3]
  local h = redis.call('HMGET', task_key, 'status', 'dead_id')
  local status = h[1]
  if status and not FINISHED[status] then return {0, status} end
  if status then
    remove_task(task_key, type_key, id, status, h[2])
    emit('deleted', id, status)
    return {1, status}
  end
  redis.call('DEL', task_key)
  redis.call('ZREM', RETENTION, id)
  redis.call('ZREM', type_key, id)
  for _, key in pairs(STATUS_INDEX) do redis.call('ZREM', key, id) end
  return {0, ''}
end

local task_prefix, type_prefix, budget = ARGV[3], ARGV[4], tonumber(ARGV[5])
local now = now_ms()
local removed = 0

-- Remove the task `id` if its hash says it is finished (and, with `only`, in that status) and, with
-- `finished_before`, it finished before that time. Returns true when removed.
local function prune_one(id, only, finished_before)
  local task_key = task_prefix .. id
  local h = redis.call('HMGET', task_key, 'status', 'dead_id', 'type', 'completed_at')
  local status = h[1]
  if not status then  -- hash gone (deleted by hand): drop what still names it
    redis.call('ZREM', RETENTION, id)
    if only then redis.call('ZREM', STATUS_INDEX[only], id) end
    return false
  end
  if not FINISHED[status] or (only and status ~= only) then return false end
  if finished_before and (tonumber(h[4]) or 0) >= finished_before then return false end
  remove_task(task_key, type_prefix .. (h[3] or ''), id, status, h[2])
  emit_batched('deleted', id, status)
  removed = removed + 1
  return true
end

-- past the retention deadline
for _, id in ipairs(redis.call('ZRANGEBYSCORE', RETENTION, '-inf', now, 'LIMIT', 0, budget)) do
  prune_one(id)
end

local STATUSES = {'completed', 'failed', 'cancelled'}
for i, status in ipairs(STATUSES) do
  local age, count = tonumber(ARGV[4 + 2 * i]), tonumber(ARGV[5 + 2 * i])
  local index = STATUS_INDEX[status]
  if count >= 0 and removed < budget then
    local excess = math.min(redis.call('ZCARD', index) - count, budget - removed)
    if excess > 0 then
      for _, id in ipairs(redis.call('ZRANGE', index, 0, excess - 1)) do prune_one(id, status) end
    end
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
return {removed, #dead}
