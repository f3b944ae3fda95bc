--[[ drop_consumer.lua: remove a (dead) worker's consumer from the group on every priority stream,
only when it has no pending entry on any of them. XGROUP DELCONSUMER discards the pending
entries of a consumer, so the check and the removal happen in one call.
KEYS[1..16]  common keys (lib.lua; only the priority streams are used)
ARGV[1]  events MAXLEN (unused)   ARGV[2]  consumer group   ARGV[3]  consumer
Returns: 1 when removed, 0 when it still has pending entries (nothing changed).
]]
local group, consumer = ARGV[2], ARGV[3]
for p = 1, 5 do
  if #redis.call('XPENDING', stream_of(p), group, '-', '+', 1, consumer) > 0 then return 0 end
end
for p = 1, 5 do
  redis.call('XGROUP', 'DELCONSUMER', stream_of(p), group, consumer)
end
return 1
