--[[ take.lua: read up to COUNT new entries for one consumer, highest priority first, and start them,
in one call.

Reading stream by stream inside one script means a lower priority is read only for the slots the
higher ones left free, so nothing low is over-fetched while something high waits. Each entry read
is started as start.lua starts it (lib.lua's start_entry: marked processing on this consumer,
attempts counted; an entry whose task is gone or no longer waits on it is acknowledged and deleted).
Nothing new is read while the partition's pause flag exists (POST /api/queues/{name}/pause). A
stream without the consumer group (lost in a failover) is skipped, not an error (see read below).
With a staging consumer (ARGV[6]; services/worker/watchers.py), the entries pending for it are taken
first: a watcher blocks in XREADGROUP as that consumer and sends this script right behind the read
on the same connection, so what the read delivered is started before the reply leaves the server.
They are found with XPENDING (reading a consumer's history would count a delivery), moved to the
consumer with XCLAIM JUSTID (the delivery count is unchanged) and started (while paused, a pending
task's entry is put back at its stream's tail instead). An entry left with the staging consumer
(this script did not run after the read) is taken by the next call, or reclaimed after the lease.
The task hashes are built from ARGV[4] (the partition's task key prefix, under the same hash tag as
every KEY, so the call stays in one cluster slot): the entries are only known inside the call.
KEYS[1..16]  common keys (lib.lua)
KEYS[17]     the partition's pause flag
ARGV[1]  events MAXLEN   ARGV[2]  consumer group   ARGV[3]  consumer   ARGV[4]  task key prefix
ARGV[5]  COUNT (free slots)   ARGV[6]  staging consumer ('' for none)
Returns: per started entry, highest priority first: {entry id, stream priority, id, type, payload,
  timeout_s, attempts, max_retries, retry_backoff_s, due_ms, priority, traceparent, tracestate} (the
  trace context the api stored, '' when none: a traced worker needs no read of its own)
]]
local now = string.format('%d', now_ms())  -- only written (started_at): see lib.lua's defer_move
local group, consumer, prefix, staging = ARGV[2], ARGV[3], ARGV[4], ARGV[6]
local remaining = tonumber(ARGV[5])
local paused = redis.call('EXISTS', KEYS[FIRST_TASK_KEY]) == 1
local out = {}

local function task_of(fields)
  if fields then
    if fields[1] == 'id' then return fields[2] end  -- the one field stream entries have
    for f = 3, #fields, 2 do
      if fields[f] == 'id' then return fields[f + 1] end
    end
  end
  return false
end

-- A read of a stream whose consumer group is gone (NOGROUP: lost in a failover) yields nothing
-- instead of failing the call after earlier streams' entries were started (their index moves are
-- written at the end); the worker's own blocking read gets the NOGROUP and re-creates the groups.
local function read(...)
  local reply = redis.pcall(...)
  if type(reply) == 'table' and reply.err then return false end
  return reply
end

local function take(stream, p, msg, id)
  -- the reply row, sized once (start_entry fills slots 3..13)
  local job = id and start_entry(prefix .. id, id, msg, stream, group, consumer, paused, now,
    {msg, p, false, false, false, false, false, false, false, false, false, false, false})
  if job then
    out[#out + 1] = job
  elseif not id then  -- the entry was deleted meanwhile (its task cancelled or removed)
    redis.call('XACK', stream, group, msg)
  end
  remaining = remaining - 1
end

if staging ~= '' then
  for p = 5, 1, -1 do
    local stream = stream_of(p)
    for _, row in ipairs(read('XPENDING', stream, group, '-', '+', 100, staging) or {}) do
      redis.call('XCLAIM', stream, group, consumer, 0, row[1], 'JUSTID')
      local entry = redis.call('XRANGE', stream, row[1], row[1])[1]
      take(stream, p, row[1], entry and task_of(entry[2]))
    end
  end
end
-- groups and type limits (docs/groups-and-limits.md): grouped tasks ready to start are released for
-- this call's free slots first (round-robin, as lib.lua's group_pump always does), so a taker is not
-- limited to the window's entries; one EXISTS when no group waits
if not paused and remaining > 0 and redis.call('EXISTS', group_base() .. 'groups:ready') == 1 then
  group_pump(group_base(), remaining)
end
if not paused then
  for p = 5, 1, -1 do
    if remaining <= 0 then break end
    local stream = stream_of(p)
    local reply = read('XREADGROUP', 'GROUP', group, consumer, 'COUNT', remaining, 'STREAMS', stream, '>')
    if reply then
      for _, entry in ipairs(reply[1][2]) do take(stream, p, entry[1], task_of(entry[2])) end
    end
  end
end
flush_deferred()
return out
