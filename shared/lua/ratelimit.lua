#!lua flags=allow-oom
--[[ ratelimit.lua: take COST tokens from a token bucket, refilled at RATE per second up to BURST.

Standalone (nothing of lib.lua). One bucket per api key or client address, shared by every
api replica; the Redis server's clock decides the refill.
Flags (the shebang): allow-oom, so a Redis full under noeviction still limits (and serves) reads: the
bucket is one small hash per caller that expires within seconds. Declaring flags also means Redis
refuses the call outright (READONLY, MISCONF) on a read-only replica or after a failed persistence
check, before it writes anything, and that KEYS[1] must be the only key it touches.
KEYS[1]  the bucket (hash: tokens, ts)
ARGV[1]  rate (tokens per second)    ARGV[2]  burst (bucket size)    ARGV[3]  cost (tokens to take)
Returns: {1, tokens left (floor)} when allowed, {0, milliseconds until COST tokens are there} when not
(-1 when COST exceeds BURST and never fits).
]]
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(state[1]), tonumber(state[2])
if not tokens then tokens, ts = burst, now end
tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
local ttl = math.ceil(burst / rate) + 1
if cost > burst then return {0, -1} end
if tokens < cost then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
  redis.call('EXPIRE', KEYS[1], ttl)
  return {0, math.ceil((cost - tokens) * 1000 / rate)}
end
tokens = tokens - cost
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('EXPIRE', KEYS[1], ttl)
return {1, math.floor(tokens)}
