--[[ submit.lua: store, index and enqueue (or schedule) a batch of new tasks, in one call.

KEYS[1..17]  common keys (lib.lua)
KEYS[18 + 3*(i-1) + 0]  task hash of task i
KEYS[18 + 3*(i-1) + 1]  type index of task i
KEYS[18 + 3*(i-1) + 2]  idempotency key of task i (unused when it has none)
ARGV[1]  events MAXLEN          ARGV[2]  idempotency TTL (seconds)      ARGV[3]  number of tasks n
ARGV[4]  queue name
then per task, 6 fixed values followed by its other hash fields (id, queue, type and priority are
written from the fixed values: each is sent once):
  id, type, priority, due_ms (0 = run now), has_idempotency_key (0/1), nfields, field1, value1, ...
Returns: for each task, four values in a flat list (no table per task): id, status, duplicate (0/1),
created_at ms; a duplicate returns the first task's id (and empty status), for the caller to read.
Index entries (all, type, status, scheduled) are written with one variadic ZADD per key at the end of
the call (lib.lua's deferred writes); the task hash, its stream entry and its events per task.
]]
local now = now_ms()
local now_s = string.format('%d', now)  -- written as given (see lib.lua's defer_move)
local idem_ttl = ARGV[2]
local n = tonumber(ARGV[3])
local queue = ARGV[4]
local out = {}
local created = 0
local a = 5
for i = 1, n do
  local base = FIRST_TASK_KEY + 3 * (i - 1)
  local task_key, type_key, idem_key = KEYS[base], KEYS[base + 1], KEYS[base + 2]
  local id, task_type, priority, due_ms, has_idem = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local o = 4 * (i - 1)  -- task i's four reply values
  local nfields = tonumber(ARGV[a + 5])
  local fields_at = a + 6
  a = fields_at + 2 * nfields
  local existing = false
  if has_idem == '1' then
    existing = redis.call('GET', idem_key)
    if not existing then redis.call('SET', idem_key, id, 'EX', idem_ttl) end
  end
  if existing then
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = existing, '', 1, 0
  else
    local status, where, at  -- scheduled: its due time; pending: its stream entry
    if tonumber(due_ms) > now then
      status, where, at = 'scheduled', 'scheduled_for', due_ms
      defer('ZADD', SCHEDULED, at, id)
    else
      status, where = 'pending', 'msg_id'
      at = redis.call('XADD', stream_of(priority), '*', 'id', id)
    end
    -- the whole task in one HSET (the script is atomic: no reader sees it half-made); the caller's
    -- fields go last, straight from ARGV (no table built per task)
    redis.call('HSET', task_key, 'created_at', now_s, 'attempts', '0', where, at, 'status', status,
      'id', id, 'queue', queue, 'type', task_type, 'priority', priority,
      unpack(ARGV, fields_at, fields_at + 2 * nfields - 1))
    defer('ZADD', INDEX_ALL, '0', id)
    defer('ZADD', type_key, '0', id)
    defer_move(id, nil, status)
    created = created + 1
    emit_batched('created', id, status)
    if status == 'scheduled' then emit_batched('scheduled', id, status) end
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = id, status, 0, now
  end
end
flush_deferred()
if created > 0 then redis.call('HINCRBY', STATS, 'submitted_total', created) end
return out
