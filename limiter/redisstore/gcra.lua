-- gcra.lua: one GCRA decision on one token bucket (package limiter, gcra.go,
-- is the reference; this mirrors gcraStep line for line).
--
-- KEYS[1]  the bucket key, <prefix>rl:{<key>}. Its value is "tat:rem:m:w:b":
--          the TAT (instant the bucket is full again) as tat + rem/m
--          microseconds since the Unix epoch, and the limit (m, w, b below) it
--          was written under. A value written before limits were recorded,
--          "tat:rem:m", is still read (see below). The key expires when the
--          bucket is full.
-- KEYS[2]  the key's upstream pause, <prefix>up:{<key>} (same hash slot):
--          when it holds an instant (µs since the epoch) still to come, the
--          call is refused with retry_us at least until then (see pause.lua)
-- ARGV[1]  m: refill is m tokens per w microseconds, in lowest terms
-- ARGV[2]  w
-- ARGV[3]  b: capacity in tokens (the effective burst)
-- ARGV[4]  cost in tokens, 1 <= cost <= b
-- ARGV[5]  max_wait in whole microseconds (0: answer now, never reserve)
-- ARGV[6]  mode: "take" (decide and record) or "peek" (decide, change nothing)
-- ARGV[7]  now in microseconds since the Unix epoch, FOR TESTS ONLY; empty in
--          production, where the clock is redis.call("TIME") and nothing else
--
-- Quantities are integers in units of 1/m microsecond ("scaled"): one token
-- is w units, the bucket holds b*w. The caller keeps them below 2^53 so that
-- Lua's doubles hold them exactly.
--
-- Reply: {allowed (0|1), remaining tokens, retry_after_us, reset_after_us,
--         wait_us, tat, tat_rem, prev, prev_rem, paused}: tat..prev_rem
--         identify a reservation (wait_us > 0) for cancel.lua, the state it
--         left and the state it found, all 0 otherwise; paused is 1 when
--         the upstream pause refused the call.

local key = KEYS[1]
local m = tonumber(ARGV[1])
local w = tonumber(ARGV[2])
local b = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local max_wait = tonumber(ARGV[5])
local mode = ARGV[6]

local now
if ARGV[7] ~= "" then
  now = tonumber(ARGV[7])
else
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- floordiv and ceildiv are lib.lua's. This script runs once per decision, so
-- it takes nothing else from the library: each helper put in front of it is
-- a closure Redis makes on every call (about 0.1 µs each). Its bucket read
-- below is lib.lua's bucket_debt written out; keep the two in step.

local capacity = b * w

-- debt: how far the TAT is ahead of now, scaled. A bucket written under
-- another limit carries over as tokens used (its debt in whole tokens of the
-- old limit, rounded up), at most b: never more than a drained bucket.
local debt = 0
local v = redis.call("GET", key)
if v then
  local s_tat, s_rem, s_m, s_w, s_b = string.match(v, "^(%d+):(%d+):(%d+):(%d+):(%d+)$")
  if s_tat then
    local tat, om, ow = tonumber(s_tat), tonumber(s_m), tonumber(s_w)
    if tat >= now then
      debt = (tat - now) * om + tonumber(s_rem)
      if om ~= m or ow ~= w or tonumber(s_b) ~= b then
        debt = math.min(ceildiv(debt, ow), b) * w
      end
    end
  else
    -- The old "tat:rem:m", whose limit is not known: treat it as possibly
    -- changed, keeping its debt in time but at most a drained bucket.
    local s_tat, s_rem, s_m = string.match(v, "^(%d+):(%d+):(%d+)$")
    if not s_tat then
      return redis.error_reply("limiter: malformed bucket value at " .. key)
    end
    local tat, rem = tonumber(s_tat), tonumber(s_rem)
    if tonumber(s_m) ~= m then
      if rem > 0 then tat = tat + 1 end
      rem = 0
    end
    if tat >= now then debt = math.min((tat - now) * m + rem, capacity) end
  end
end

local inc = cost * w

local allowed, retry, wait = 0, 0, 0
local after = debt
local need = debt + inc - capacity
if need <= 0 then
  allowed = 1
  after = debt + inc
else
  local t = ceildiv(need, m)
  if mode == "take" and t <= max_wait then
    allowed = 1
    wait = t
    -- Admitted at now+t: refill the full bucket had no room for is lost.
    after = math.max(debt, t * m) + inc
  else
    retry = t
  end
end

-- An upstream pause refuses whatever the bucket holds; the bucket's answer
-- is given as if peeked.
local paused = 0
local pu = redis.call("GET", KEYS[2])
if pu and tonumber(pu) > now then
  local t = 0
  if need > 0 then t = ceildiv(need, m) end
  paused, allowed, wait, after = 1, 0, 0, debt
  retry = math.max(t, tonumber(pu) - now)
end

local remaining = 0
if capacity > after then remaining = floordiv(capacity - after, w) end
local reset = ceildiv(after, m)

local r_tat, r_rem, r_prev, r_prev_rem = 0, 0, 0, 0
if mode == "take" and allowed == 1 then
  -- %d formats the (exact, below 2^53) integers through a C long: cheaper
  -- than %.0f, and the same digits.
  local q = floordiv(after, m)
  redis.call("SET", key, string.format("%d:%d:%d:%d:%d", now + q, after - q * m, m, w, b),
    "PX", math.max(ceildiv(reset, 1000), 1))
  if wait > 0 then
    local qp = floordiv(debt, m)
    r_tat, r_rem, r_prev, r_prev_rem = now + q, after - q * m, now + qp, debt - qp * m
  end
end

return {allowed, remaining, retry, reset, wait, r_tat, r_rem, r_prev, r_prev_rem, paused}
