--[[ fetch.lua: read up to COUNT new entries for one consumer, highest priority first.

Reading stream by stream inside one script means a lower priority is read only for the slots the
higher ones left free, so nothing low is over-fetched while something high waits.
Nothing is read while the partition's pause flag exists (POST /api/queues/{name}/pause).
Standalone (lib.lua is not prepended).
KEYS[1..5]  priority streams, highest priority first
KEYS[6]     the partition's pause flag (optional)
ARGV[1]  consumer group     ARGV[2]  consumer name     ARGV[3]  COUNT (free slots)
Returns: flat list {key_index, entry_id, task_id, ...} of what was delivered (key_index into KEYS);
empty while paused.
]]
if KEYS[6] and redis.call('EXISTS', KEYS[6]) == 1 then return {} end
local remaining = tonumber(ARGV[3])
local out = {}
for k = 1, 5 do
  if remaining <= 0 then break end
  local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', remaining, 'STREAMS', KEYS[k], '>')
  if reply then
    for _, entry in ipairs(reply[1][2]) do
      local fields, task_id = entry[2], ''
      for f = 1, #fields, 2 do
        if fields[f] == 'id' then task_id = fields[f + 1] end
      end
      out[#out + 1] = k
      out[#out + 1] = entry[1]
      out[#out + 1] = task_id
      remaining = remaining - 1
    end
  end
end
return out
