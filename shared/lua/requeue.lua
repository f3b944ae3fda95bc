--[[ requeue.lua: give a task a fresh stream entry when its pending entry was deleted or trimmed
(XAUTOCLAIM reports such ids and drops them from the PEL; the task hash is still there).

Only a task still waiting on that very entry is touched. A task that had started keeps its attempt
count: the fresh entry is marked as already started, so its redelivery is not a new attempt.
KEYS[1..16]  common keys (lib.lua)      KEYS[17]  task hash
ARGV[1]  events MAXLEN    ARGV[2]  task id    ARGV[3]  the deleted entry id
Returns: the fresh entry id, or '' when the task no longer waits on that entry.
]]
local task_key, id, old = KEYS[17], ARGV[2], ARGV[3]
local h = redis.call('HMGET', task_key, 'status', 'msg_id', 'priority', 'started_msg')
local status = h[1]
if (status ~= 'pending' and status ~= 'processing') or h[2] ~= old then return '' end
local msg = enqueue(task_key, id, h[3])
if h[4] == old then redis.call('HSET', task_key, 'started_msg', msg) end
set_status(task_key, id, status, 'pending')
emit('requeued', id, 'pending')
return msg
