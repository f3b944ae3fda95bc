--[[ webhook_enqueue.lua: create a webhook message (a delivery) for a task, due after a delay.

Mode 'event': from a terminal lifecycle event; creates the delivery unless it exists (its id comes
from the event's entry id, so a redelivered event never creates a second one) and acknowledges the
event for the notifier's group in the same call.
Mode 'redeliver': POST /api/tasks/{id}/redeliver; an existing delivery starts a fresh series of
attempts (same webhook-id and body), a missing one is created.
The task's webhook_status becomes 'pending' and its webhook_delivery this id (only when the task still
exists); a different id it held before is added to the task's webhook_earlier (ids separated by
spaces), so removing the task (remove.lua) finds every message of it, and a task with one message
(the usual case) stores no list.
KEYS[1..16]  common keys (lib.lua)
KEYS[17] delivery hash    KEYS[18] due zset (webhooks:due)    KEYS[19] task hash
ARGV[1]  events MAXLEN    ARGV[2]  mode ('event' | 'redeliver')    ARGV[3] delivery id
ARGV[4]  task id    ARGV[5] event    ARGV[6] url    ARGV[7] body (JSON)    ARGV[8] delay before the first
attempt (ms)    ARGV[9] consumer group    ARGV[10] event entry id (mode 'event')
Returns: {created (1/0), due time ms}
]]
local delivery_key, due_key, task_key = KEYS[17], KEYS[18], KEYS[19]
local mode, id, task_id = ARGV[2], ARGV[3], ARGV[4]
local now = now_ms()
local due = now + tonumber(ARGV[8])
local exists = redis.call('EXISTS', delivery_key) == 1
local created = 0
if mode == 'event' and exists then
  redis.call('XACK', EVENTS, ARGV[9], ARGV[10])
  return {0, 0}
end
if exists then
  redis.call('HSET', delivery_key, 'round', 0, 'status', 'pending', 'next_at', due, 'error', '')
  redis.call('PERSIST', delivery_key)
else
  redis.call('HSET', delivery_key, 'id', id, 'task', task_id, 'event', ARGV[5], 'url', ARGV[6], 'body', ARGV[7],
    'attempts', 0, 'round', 0, 'status', 'pending', 'created_at', now, 'next_at', due)
  created = 1
end
redis.call('ZADD', due_key, due, id)
if redis.call('EXISTS', task_key) == 1 then
  local h = redis.call('HMGET', task_key, 'webhook_delivery', 'webhook_earlier')
  local latest, earlier = h[1] or '', h[2] or ''
  local listed = string.find(' ' .. earlier .. ' ', ' ' .. latest .. ' ', 1, true)
  if latest ~= '' and latest ~= id and not listed then
    earlier = earlier == '' and latest or (earlier .. ' ' .. latest)
    redis.call('HSET', task_key, 'webhook_earlier', earlier)
  end
  redis.call('HSET', task_key, 'webhook_status', 'pending', 'webhook_delivery', id)
end
if mode == 'event' then redis.call('XACK', EVENTS, ARGV[9], ARGV[10]) end
return {created, due}
