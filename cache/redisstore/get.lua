-- get.lua: read a cache entry and its remaining time to live atomically.
-- KEYS[1]  the entry key (<prefix>cache:<key>)
-- ARGV     none
-- Reply    nil when the key does not exist;
--          otherwise {value (bulk string), pttl (integer, ms; -1 = no expiry)}
local value = redis.call("GET", KEYS[1])
if not value then
  return false
end
return {value, redis.call("PTTL", KEYS[1])}
