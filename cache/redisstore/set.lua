-- set.lua: store one value and announce it, in one step, on the key's node:
-- a subscriber that hears the announcement and reads the key again reads
-- the new value (a PUBLISH of its own could run on another Cluster node,
-- before the SET).
-- KEYS[1]  the cache key (<prefix>cache:<key>)
-- ARGV[1]  value
-- ARGV[2]  ttl in ms; 0: no expiry
-- ARGV[3]  the invalidations channel (<prefix>cache-invalidations)
-- ARGV[4]  the invalidation message (see encodeInvalidation)
-- Reply    1
local value = ARGV[1]
local ttl_ms = tonumber(ARGV[2])
local channel = ARGV[3]
local message = ARGV[4]
if ttl_ms > 0 then
  redis.call("SET", KEYS[1], value, "PX", ttl_ms)
else
  redis.call("SET", KEYS[1], value)
end
redis.call("PUBLISH", channel, message)
return 1
