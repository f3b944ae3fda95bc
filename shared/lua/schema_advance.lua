--[[ schema_advance.lua: record that every partition ran the migration to ARGV[1] (standalone; no lib.lua).

The deployment's schema version only moves forward: a migrator that finished late (two api replicas
migrating at once) never writes an older version over a newer one. The migration's per-partition
progress fields are dropped in the same call, so the hash stays a few fields long.
KEYS[1]  <prefix>:schema (hash: version, done:<version>:<partition tag> while a migration runs)
ARGV[1]  the version every partition now has
ARGV[2..] the progress fields of that migration
Returns: the version stored after the call.
]]
local target = tonumber(ARGV[1])
local stored = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if stored < target then
  redis.call('HSET', KEYS[1], 'version', target)
  stored = target
end
if #ARGV > 1 then
  redis.call('HDEL', KEYS[1], unpack(ARGV, 2))
end
return stored
