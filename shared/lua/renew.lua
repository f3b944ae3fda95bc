--[[ renew.lua: renew this worker's lease on its running entries (XCLAIM ... JUSTID resets the idle
time without counting a delivery), but only for entries still pending for this consumer: a worker
can never take back an entry another worker reclaimed.
KEYS[1..16]  common keys (lib.lua; only the priority streams are used)
ARGV[1]  events MAXLEN (unused)   ARGV[2]  consumer group   ARGV[3]  consumer
per entry i, from ARGV[4 + 2*(i-1)]: priority of its stream, entry id
Returns: per entry, 1 when renewed, 0 when another consumer holds it now (lease lost), -1 when it
is no longer pending at all (its outcome was just recorded).
]]
local group, consumer = ARGV[2], ARGV[3]
local out = {}
for a = 4, #ARGV, 2 do
  local stream, msg = stream_of(ARGV[a]), ARGV[a + 1]
  local row = redis.call('XPENDING', stream, group, msg, msg, 1)
  if #row == 0 then
    out[#out + 1] = -1
  elseif row[1][2] == consumer then
    redis.call('XCLAIM', stream, group, consumer, 0, msg, 'JUSTID')
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
