-- cancel.lua: give back the tokens of one reservation made by gcra.lua, if
-- nothing was taken on the bucket since (package limiter, gcra.go's
-- cancelStep, is the reference).
--
-- KEYS[1]  the bucket key, <prefix>rl:{<key>}, as in gcra.lua ("tat:rem:m:w:b")
-- ARGV[1]  m: the limit the reservation was made under, as in gcra.lua
-- ARGV[2]  w
-- ARGV[3]  b
-- ARGV[4]  tat: the state the reservation left (gcra.lua's reply[6])
-- ARGV[5]  tat_rem (reply[7])
-- ARGV[6]  prev: the state it found (reply[8])
-- ARGV[7]  prev_rem (reply[9])
-- ARGV[8]  now in microseconds since the Unix epoch, FOR TESTS ONLY; empty in
--          production, where the clock is redis.call("TIME") and nothing else
--
-- When the key holds exactly "tat:tat_rem:m:w:b" (the reservation was the last
-- thing charged, under the same limit), its value becomes
-- "prev:prev_rem:m:w:b", expiring when that bucket is full (deleted when it is
-- full already). Otherwise nothing changes. The caller checks that
-- prev:prev_rem comes before tat:tat_rem and both remainders are below m.
--
-- Reply: 1 when the tokens were given back, 0 when nothing changed.

local key = KEYS[1]
local m = ARGV[1]
local w = ARGV[2]
local b = ARGV[3]
local tat, tat_rem = ARGV[4], ARGV[5]
local prev, prev_rem = tonumber(ARGV[6]), tonumber(ARGV[7])

-- The integers are compared as the digits gcra.lua wrote.
if redis.call("GET", key) ~= table.concat({tat, tat_rem, m, w, b}, ":") then
  return 0
end

local now = now_us(ARGV[8])

if prev < now or (prev == now and prev_rem == 0) then
  redis.call("DEL", key)
  return 1
end
-- The bucket is full again at prev + prev_rem/m µs: expire then, rounded up
-- to a whole millisecond.
local m_n = tonumber(m)
local reset_us = ceildiv((prev - now) * m_n + prev_rem, m_n)
redis.call("SET", key, table.concat({ARGV[6], ARGV[7], m, w, b}, ":"),
  "PX", math.max(ceildiv(reset_us, 1000), 1))
return 1
