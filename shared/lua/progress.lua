--[[ progress.lua: record the progress handlers reported on this worker's running tasks, in one call.

Like a finish, a report is written only while the entry is still pending for this consumer and the
task runs on it: a worker that lost its lease (the entry reclaimed by another) cannot write over the
task. The worker sends each task's latest report at most every 0.1 s (services/worker/progress.py),
so at most about 10 `progress` events a second per task reach the events stream.
KEYS[1..16]  common keys (lib.lua)
KEYS[16 + i] task hash of report i
ARGV[1]  events MAXLEN   ARGV[2]  consumer group   ARGV[3]  consumer
per report i, from ARGV[4 + 5*(i-1)]: task id, entry id, priority of its stream, fraction ('0'..'1'),
  message
Returns: per report, 'ok' when written, 'lost' when the entry is no longer this consumer's, 'stale' when
the task no longer runs on that entry.
]]
local group, consumer = ARGV[2], ARGV[3]
local out = {}
local n = (#ARGV - 3) / 5
for i = 1, n do
  local a = 4 + 5 * (i - 1)
  local id, msg, task_key = ARGV[a], ARGV[a + 1], KEYS[FIRST_TASK_KEY - 1 + i]
  local row = redis.call('XPENDING', stream_of(ARGV[a + 2]), group, msg, msg, 1)
  if #row == 0 or row[1][2] ~= consumer then
    out[i] = 'lost'
  else
    local h = redis.call('HMGET', task_key, 'status', 'msg_id')
    if h[1] ~= 'processing' or h[2] ~= msg then
      out[i] = 'stale'
    else
      redis.call('HSET', task_key, 'progress', ARGV[a + 3], 'progress_message', ARGV[a + 4])
      emit_batched('progress', id, 'processing')
      out[i] = 'ok'
    end
  end
end
flush_deferred()
return out
