--[[ submit.lua: store, index and enqueue (or schedule) a batch of new tasks, in one call.

KEYS[1..16]  common keys (lib.lua); no per-task KEYS: each task's hash, type index and idempotency
             key are built from the partition's prefixes in ARGV[4..6] (under the same hash tag as
             every KEY, so the call stays in one cluster slot, as take.lua's task hashes do)
ARGV[1]  events MAXLEN          ARGV[2]  idempotency TTL (seconds)      ARGV[3]  number of tasks n
ARGV[4]  task hash prefix       ARGV[5]  type index prefix              ARGV[6]  idempotency key prefix
ARGV[7]  1 when the ids were made before the call's first attempt (guarded, below), else 0
then per task, 8 fixed values followed by its other hash fields (type, priority, payload and
max_retries are written from the fixed values: each is sent once, with no field name; the id and
the queue are in the hash's key and not written again, and attempts is absent until the first start,
which readers take as 0):
  id, type, priority, due_ms (0 = run now), idempotency key ('' = none), payload JSON, max_retries,
  nextra, field1, value1, ... (nextra pairs)
A task whose extra fields start with `flow` (its letters: u unique, d debounce, g group) may carry a
unique or debounce key (lib.lua: flow_submit): its lock is taken or joined here, in the same call.
Guarded calls: a task without an idempotency key whose id is already a task's is not created again:
ids are unique, so that is the same call sent again (the direct client's `submit_many` sends a batch
again with the ids it made for it, and no idempotency keys of its own: one EXISTS a task instead of a
key per task kept for a day). Other callers make new ids for each attempt and skip the EXISTS.
Returns: {now_ms, then for each task not created: its position in the call (1-based), the earlier
  task's id: bare for an idempotency key already taken or an id already stored, 'u:<id>' when its unique key is held by task
  <id>, 'd:<id>' when it was debounced into waiting task <id> (which took its payload and due time)}. A new task's created_at is now_ms and its status is
  scheduled when its due_ms > now_ms, else pending: the caller knows both from what it sent (nothing
  per new task comes back).
Groups and type limits (docs/groups-and-limits.md): a task whose extra fields start with `flow` (with
the letter g) then `group`, or of a
type listed in the partition's limits:types hash (one EXISTS a call, one HEXISTS a task only when it
exists), gets no stream entry here: it joins its group's waiting tasks (lib.lua's group_admit), and an
ungrouped one gets 'g' in its `flow`.
Index entries (type, status, scheduled) are written with one variadic ZADD per key at the end of
the call (lib.lua's deferred writes); the task hash, its stream entry and its events per task.
]]
local now = now_ms()
local now_s = string.format('%d', now)  -- written as given (see lib.lua's defer_move)
local idem_ttl = ARGV[2]
local n = tonumber(ARGV[3])
local task_prefix, type_prefix, idem_prefix = ARGV[4], ARGV[5], ARGV[6]
local guarded = ARGV[7] == '1'  -- see the header
local out = {now}
local created = 0
-- groups and type limits: see the header
local LIMITED_TYPES = group_base() .. 'limits:types'
local typed = redis.call('EXISTS', LIMITED_TYPES) == 1
local admitted = false  -- a task joined its group's waiting ones: group_pump runs once at the end
local a = 8
for i = 1, n do
  local id, task_type, priority, due_ms, idem = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local payload, max_retries = ARGV[a + 5], ARGV[a + 6]
  local extra_at = a + 8
  local extra_end = extra_at + 2 * tonumber(ARGV[a + 7]) - 1
  a = extra_end + 1
  local existing, mark = false, ''
  local flow = extra_end > extra_at and ARGV[extra_at] == 'flow'
  if idem ~= '' then
    local idem_key = idem_prefix .. idem
    existing = redis.call('GET', idem_key)
    if not existing then
      if flow then existing, mark, due_ms = flow_submit(argv_fields(extra_at, extra_end), id, task_prefix, payload,
        due_ms, now) end
      -- a refused submit (its unique key held) made nothing to replay; a debounced one names its task
      if mark ~= 'u:' then redis.call('SET', idem_key, existing or id, 'EX', idem_ttl) end
    end
  elseif guarded and redis.call('EXISTS', task_prefix .. id) == 1 then
    existing = id  -- this call sent again (see the header): the task its first attempt made answers
  elseif flow then
    existing, mark, due_ms = flow_submit(argv_fields(extra_at, extra_end), id, task_prefix, payload, due_ms, now)
  end
  if existing then
    out[#out + 1] = i
    out[#out + 1] = mark .. existing
  else
    -- groups and type limits: see the header
    local grouped = flow and extra_end > extra_at + 2 and ARGV[extra_at + 2] == 'group'
    local limited = grouped or (typed and redis.call('HEXISTS', LIMITED_TYPES, task_type) == 1)
    -- a flow task is scheduled at once: a later debounced submit in this call moves it (a deferred
    -- ZADD would undo that)
    local status, where, at = place_new(id, priority, tonumber(due_ms), due_ms, now, limited, flow)
    -- the whole task in one HSET (the script is atomic: no reader sees it half-made); the caller's
    -- other fields go last, straight from ARGV (no table built per task)
    redis.call('HSET', task_prefix .. id, 'created_at', now_s, where, at, 'status', status, 'type', task_type,
      'priority', priority, 'payload', payload, 'max_retries', max_retries, unpack(ARGV, extra_at, extra_end))
    if limited then
      group_submitted(task_prefix .. id, id, status, grouped and ARGV[extra_at + 3] or '', priority, now_s)
      admitted = true
    end
    defer('ZADD', type_prefix .. task_type, '0', id)
    defer_move(id, nil, status)
    created = created + 1
    emit_batched('created', id, status)
    if status == 'scheduled' then emit_batched('scheduled', id, status) end
  end
end
if admitted then group_pump(group_base()) end  -- groups and type limits: see the header
flush_deferred()
if created > 0 then redis.call('HINCRBY', STATS, 'submitted_total', created) end
return out
