--[[ webhook_claim.lua: lease due webhook deliveries to one notifier before it sends them.

A delivery is taken only while it is still due (its score <= now), so two notifiers never take the
same attempt; taking it moves its due time to now + lease, so an attempt whose notifier dies is
due again once the lease runs out (a restart loses nothing). Each take counts an attempt; the
attempt number is the fencing token webhook_record.lua checks.
KEYS[1..16]  common keys (lib.lua)
KEYS[17] due zset (webhooks:due)    KEYS[17 + i] delivery hash of delivery i
ARGV[1]  events MAXLEN    ARGV[2]  lease (ms)    ARGV[2 + i] id of delivery i
Returns: per delivery taken {id, attempt, round, task id, event, url, body}; a due id whose hash is
gone is dropped from the due set.
]]
local due_key = KEYS[17]
local lease = tonumber(ARGV[2])
local now = now_ms()
local out = {}
for i = 1, #ARGV - 2 do
  local id, delivery_key = ARGV[2 + i], KEYS[17 + i]
  local score = redis.call('ZSCORE', due_key, id)
  if score and tonumber(score) <= now then
    if redis.call('EXISTS', delivery_key) == 0 then
      redis.call('ZREM', due_key, id)
    else
      local attempt = redis.call('HINCRBY', delivery_key, 'attempts', 1)
      local round = redis.call('HINCRBY', delivery_key, 'round', 1)
      redis.call('ZADD', due_key, now + lease, id)
      local h = redis.call('HMGET', delivery_key, 'task', 'event', 'url', 'body')
      out[#out + 1] = {id, attempt, round, h[1], h[2], h[3], h[4]}
    end
  end
end
return out
