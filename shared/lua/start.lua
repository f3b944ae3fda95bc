--[[ start.lua: mark delivered stream entries as running on one worker, in one call.

An entry whose task is gone, or no longer waits on that entry (cancelled, retried, finished),
is acknowledged and deleted instead, and reported as skipped.
A redelivery of the same entry (after a crash) does not count as a new attempt.
While the partition is paused (KEYS[17 + n] exists), a pending task is not started: its entry is
acknowledged, deleted and put back at its stream's tail, and the entry reported as skipped (this
closes the race with a blocking read that was waiting when the pause came).
(lib.lua's start_entry does the work for each entry; take.lua shares it.)
KEYS[1..16]  common keys (lib.lua)
KEYS[16 + i] task hash of entry i
KEYS[17 + n] the partition's pause flag (optional; n = number of entries)
ARGV[1]  events MAXLEN    ARGV[2]  consumer group    ARGV[3]  consumer (worker id)
per entry i, from ARGV[4 + 3*(i-1)]: entry id, task id, priority of the stream it was read from
Returns: per entry, {} when skipped, else
  {id, type, payload, timeout_s, attempts, max_retries, retry_backoff_s, due_ms, priority, traceparent,
  tracestate}
]]
local now = now_ms()
local group, consumer = ARGV[2], ARGV[3]
local out = {}
local n = (#ARGV - 3) / 3
local paused = KEYS[FIRST_TASK_KEY + n] and redis.call('EXISTS', KEYS[FIRST_TASK_KEY + n]) == 1
for i = 1, n do
  local a = 4 + 3 * (i - 1)
  out[i] = start_entry(KEYS[FIRST_TASK_KEY - 1 + i], ARGV[a + 1], ARGV[a], stream_of(ARGV[a + 2]), group, consumer,
    paused, now) or {}
end
flush_deferred()
return out
