--[[ remove.lua: delete a finished task and every index entry of it.

Used by DELETE /api/tasks/{id} (mode 'delete') and by the janitor for tasks past their result TTL
(mode 'expire': only when its retention deadline has passed).
KEYS[1..16]  common keys (lib.lua)      KEYS[17]  task hash     KEYS[18]  its type index
ARGV[1]  events MAXLEN    ARGV[2]  task id    ARGV[3]  mode: 'delete' or 'expire'
Returns: {1, status} when removed, {0, status} when not terminal (or not yet expired),
{0, ''} when the task does not exist (its index entries are removed anyway).
]]
local task_key, type_key, id, mode = KEYS[17], KEYS[18], ARGV[2], ARGV[3]
local h = redis.call('HMGET', task_key, 'status', 'dead_id')
local status = h[1]
if status and status ~= 'completed' and status ~= 'failed' and status ~= 'cancelled' then
  return {0, status}
end
if status and mode == 'expire' then
  local deadline = redis.call('ZSCORE', RETENTION, id)
  if not deadline or tonumber(deadline) > now_ms() then return {0, status} end
end
if h[2] and h[2] ~= '' then redis.call('XDEL', DEAD, h[2]) end
redis.call('DEL', task_key)
redis.call('ZREM', RETENTION, id)
redis.call('ZREM', type_key, id)
if status then
  redis.call('ZREM', STATUS_INDEX[status], id)
  emit('deleted', id, status)
  return {1, status}
end
for _, key in pairs(STATUS_INDEX) do redis.call('ZREM', key, id) end
return {0, ''}
