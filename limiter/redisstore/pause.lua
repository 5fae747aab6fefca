-- pause.lua: what an upstream answered for one key (package limiter,
-- multi_memory.go's Pause and pauseStep, is the reference).
--
-- KEYS[1]  the bucket, <prefix>rl:{<key>}, as in gcra.lua
-- KEYS[2]  the pause, <prefix>up:{<key>}: its end in µs since the epoch
-- ARGV[1]  now in µs, FOR TESTS ONLY; empty in production (redis TIME)
-- ARGV[2]  pause in µs (0: none; the caller bounds it by limiter.MaxPause)
-- ARGV[3]  remaining tokens the upstream has, or -1 when unknown
-- ARGV[4..6]  m w b: the bucket's limit, as in gcra.lua (used with remaining)
--
-- The pause's end becomes the later of its end and now + pause (never
-- shortened); with remaining >= 0, the bucket is left with at most
-- remaining tokens (its debt only grows). Reply: {paused_for_us,
-- remaining_after} (remaining_after 0 without remaining).

local now = now_us(ARGV[1])
local pause = tonumber(ARGV[2])
local remaining = tonumber(ARGV[3])

local cur = tonumber(redis.call("GET", KEYS[2]) or "0")
if pause > 0 and now + pause > cur then
  cur = now + pause
  redis.call("SET", KEYS[2], string.format("%d", cur), "PX", math.max(ceildiv(pause, 1000), 1))
end
local paused_for = 0
if cur > now then paused_for = cur - now end

local after = 0
if remaining >= 0 then
  local m, w, b = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local debt, err = bucket_debt(KEYS[1], redis.call("GET", KEYS[1]), now, m, w, b, false)
  if err then return err end
  local floor = b * w - math.min(remaining, b) * w
  if debt < floor then debt = floor end
  if debt > 0 then set_bucket(KEYS[1], now, debt, ceildiv(debt, m), m, w, b) end
  after = floordiv(b * w - debt, w)
end
return {paused_for, after}
