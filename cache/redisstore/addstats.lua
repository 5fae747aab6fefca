-- addstats.lua: add one batch of cache statistics, at most once per batch.
-- KEYS[1]  the stats hash (<prefix>{cache-stats})
-- KEYS[2]  the last batch applied for this source (<prefix>{cache-stats}:seq:<source>)
-- ARGV[1]  seq: the batch number, increasing per source
-- ARGV[2]  how long to keep KEYS[2], in ms
-- ARGV[3..] field, increment pairs (hits, misses, sets, deletes, errors)
-- Reply    1 when the batch was applied, 0 when it had been applied already
local seq = tonumber(ARGV[1])
local ttl_ms = ARGV[2]
local last = tonumber(redis.call("GET", KEYS[2]) or "0")
if seq <= last then
  return 0
end
for i = 3, #ARGV, 2 do
  redis.call("HINCRBY", KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call("SET", KEYS[2], ARGV[1], "PX", ttl_ms)
return 1
