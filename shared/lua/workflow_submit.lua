--[[ workflow_submit.lua: store a workflow and every one of its steps (tasks) in one call, all in one
partition; steps without parents are queued (or scheduled) at once, the others wait (status `waiting`)
until their last parent completes (lib.lua's workflow functions release them).

KEYS[1..16]  common keys (lib.lua); no other KEYS: every key is built from ARGV[3], the partition's
             '<prefix>:{<tag>}:' (the same hash tag as every KEY, so the call stays in one cluster slot)
ARGV[1]  events MAXLEN     ARGV[2]  idempotency TTL (seconds)     ARGV[3]  key base '<prefix>:{<tag>}:'
ARGV[4]  workflow id       ARGV[5]  idempotency key ('' = none)   ARGV[6]  name
ARGV[7]  webhook ('' = none)   ARGV[8]  retention once ended (ms)   ARGV[9]  number of steps n
ARGV[10] steps JSON ({"name": task id}, in the order given)       ARGV[11] '1' when an on_failure task follows
then per step (and last the on_failure task), 12 fixed values and its other hash fields:
  task id, step name, type, priority, scheduled_for (ms, 0 = none), delay (ms), payload JSON, max_retries,
  parent ids (space-separated), parent names (same order), child ids (space-separated), nextra,
  field1, value1, ... (nextra pairs)
A root step of a type under a limit (limits:types) waits for its limits as a submitted task does
(docs/groups-and-limits.md), counted in this partition; a step released later likewise (lib.lua's wf_release).
Returns: {1, now_ms} when stored; {0, id of the earlier workflow} when the idempotency key is taken
(nothing written). Index entries are written with one variadic ZADD per key at the end (lib.lua's
deferred writes), as submit.lua does.
]]
local now = now_ms()
local now_s = string.format('%d', now)
local base, wid, idem = ARGV[3], ARGV[4], ARGV[5]
if idem ~= '' then
  local idem_key = base .. 'wf:idem:' .. idem
  local existing = redis.call('GET', idem_key)
  if existing then return {0, existing} end
  redis.call('SET', idem_key, wid, 'EX', ARGV[2])
end
-- a step of a type under a limit (limits:types) gets 'g' in its flow; a pending one waits for its limits
-- (lib.lua's group_admit, as submit.lua does), pumped once at the end
local typed = redis.call('EXISTS', base .. 'limits:types') == 1
local admitted = false
local n = tonumber(ARGV[9])
local total = n + (ARGV[11] == '1' and 1 or 0)
local step_ids, on_failure_id = {}, ''
local a = 12
for i = 1, total do
  local id, name, task_type, priority, due, delay, payload, max_retries, pids, pnames, children =
    unpack(ARGV, a, a + 10)
  local extra_at = a + 12
  local extra_end = extra_at + 2 * tonumber(ARGV[a + 11]) - 1
  a = extra_end + 1
  local parents = 0
  for _ in string.gmatch(pids, '%S+') do parents = parents + 1 end
  if i > n then on_failure_id = id else step_ids[#step_ids + 1] = id end
  local status, where, at
  local limited, flow = false, 'w'
  if i <= n and parents == 0 then
    limited = typed and type_limited(task_type)
    if limited then flow = 'wg' end
    local due_at = math.max(tonumber(due), now + tonumber(delay))
    status, where, at = place_new(id, priority, due_at, string.format('%d', due_at), now, limited, false)
  else
    status, where, at = 'waiting', 'wf_due', due
  end
  redis.call('HSET', base .. 'task:' .. id, 'created_at', now_s, where, at, 'status', status, 'type', task_type,
    'priority', priority, 'payload', payload, 'max_retries', max_retries, 'flow', flow, 'workflow', wid, 'step', name,
    'parent_ids', pids, 'parent_names', pnames, 'children', children, 'waiting_on', parents, 'wf_delay', delay,
    unpack(ARGV, extra_at, extra_end))
  if limited and status == 'pending' then
    group_admit(base, id, '', priority, now)
    admitted = true
  end
  defer('ZADD', base .. 'idx:type:' .. task_type, '0', id)
  defer('ZADD', STATUS_INDEX[status] or (base .. 'idx:status:waiting'), '0', id)
  emit_batched('created', id, status)
  if status == 'scheduled' then emit_batched('scheduled', id, status) end
end
flush_deferred()
local wf_key = base .. 'wf:' .. wid
redis.call('HSET', wf_key, 'name', ARGV[6], 'status', 'running', 'created_at', now_s, 'webhook', ARGV[7],
  'ttl_ms', ARGV[8], 'open', n, 'bad', 0, 'total', n, 'steps', ARGV[10], 'step_ids', table.concat(step_ids, ' '),
  'on_failure_id', on_failure_id, 'idempotency_key', idem)
redis.call('ZADD', base .. 'wf:idx', 0, wid)
redis.call('ZADD', base .. 'wf:idx:running', 0, wid)
if admitted then group_pump(base) end
redis.call('HINCRBY', STATS, 'submitted_total', total)
redis.call('HINCRBY', STATS, 'workflows_started_total', 1)
redis.call('XADD', EVENTS, 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'event', 'workflow.started', 'task', wid,
  'status', 'running', 'workflow', wid)
return {1, now}
