-- release.lua: give back one call's concurrency slots and queue places.
--
-- KEYS, three per limit i, at 3i+1 .. 3i+3: cc, cq, cx as in multi.lua.
-- ARGV[1]  now in µs, FOR TESTS ONLY; empty in production (redis TIME)
-- ARGV[2]  the call's slot id
--
-- Reply: the number of slots given back that were still held (a lease not
-- yet ended).

local now = now_us(ARGV[1])
local id = ARGV[2]
local n = 0
for i = 0, #KEYS / 3 - 1 do
  local cc, cq, cx = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local ends = redis.call("ZSCORE", cc, id)
  if ends and tonumber(ends) > now then n = n + 1 end
  redis.call("ZREM", cc, id)
  redis.call("ZREM", cq, id)
  redis.call("ZREM", cx, id)
end
return n
