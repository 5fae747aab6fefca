-- gcra.lua: GCRA decisions on token buckets, one or several in one run,
-- each made as if alone, in order (package limiter, gcra.go, is the
-- reference; the loop's body mirrors gcraStep line for line). Several
-- decisions share one script call, one TIME and one read of their keys: on
-- one node a batch of concurrent decisions is one call (see store.go), since
-- the fixed cost of a script call and of each redis.call is most of what a
-- decision costs Redis.
--
-- For decision i of n (i = 1..n; n = #KEYS / 2):
-- KEYS[2i-1]  the bucket key, <prefix>rl:{<key>}. Its value is "tat:rem:m:w:b":
--          the TAT (instant the bucket is full again) as tat + rem/m
--          microseconds since the Unix epoch, and the limit (m, w, b below) it
--          was written under. A value written before limits were recorded,
--          "tat:rem:m", is still read (see below). The key expires when the
--          bucket is full.
-- KEYS[2i]  the key's upstream pause, <prefix>up:{<key>} (same hash slot):
--          when it holds an instant (µs since the epoch) still to come, the
--          call is refused with retry_us at least until then (see pause.lua)
-- ARGV[6i-5]  m: refill is m tokens per w microseconds, in lowest terms
-- ARGV[6i-4]  w
-- ARGV[6i-3]  b: capacity in tokens (the effective burst)
-- ARGV[6i-2]  cost in tokens, 1 <= cost <= b
-- ARGV[6i-1]  max_wait in whole microseconds (0: answer now, never reserve)
-- ARGV[6i]    mode: "take" (decide and record) or "peek" (decide, change nothing)
-- and, once, after them:
-- ARGV[6n+1]  now in microseconds since the Unix epoch, FOR TESTS ONLY; empty
--          in production, where the clock is redis.call("TIME") and nothing else
--
-- Quantities are integers in units of 1/m microsecond ("scaled"): one token
-- is w units, the bucket holds b*w. The caller keeps them below 2^53 so that
-- Lua's doubles hold them exactly.
--
-- Reply: an array of n replies, decision i's at i: {allowed (0|1), remaining
--         tokens, retry_after_us, reset_after_us, wait_us, tat, tat_rem,
--         prev, prev_rem, paused}: tat..prev_rem identify a reservation
--         (wait_us > 0) for cancel.lua, the state it left and the state it
--         found, all 0 otherwise; paused is 1 when the upstream pause refused
--         the call. A decision on a malformed bucket value is an error reply
--         in its place (its text starts "limiter:", never a code go-redis
--         reads as a typed error, which it cannot parse inside an array) and
--         changes nothing; the others are made all the same. A write Redis
--         refuses (out of memory, a replica) fails the whole call: Redis
--         refuses only a script's first write, so nothing was changed, and
--         the error reaches go-redis as itself (READONLY makes it drop the
--         connection, as it must after a failover).

local n = #KEYS / 2

local now
if ARGV[6 * n + 1] ~= "" then
  now = tonumber(ARGV[6 * n + 1])
else
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- floordiv, ceildiv, bucket_debt, bucket_value and set_bucket are lib.lua's:
-- withLib puts them in front of this script once per call (a batch), not
-- once per decision.

-- Every key in one read. A batch may hold a key twice (a hot key's
-- concurrent calls): a bucket an earlier decision of this call took from is
-- kept in taken (its debt after that decision and the limit it was taken
-- under), and written once, after the last decision: nobody sees a script's
-- writes before it ends, so one SET of the final value is the same as one
-- per decision, at a fraction of the cost. order lists the taken keys in
-- the order of their first take.
local got = redis.call("MGET", unpack(KEYS))
local taken = {}
local order = {}
local replies = {}

for i = 1, n do
  local key = KEYS[2 * i - 1]
  local a = 6 * (i - 1)
  local m = tonumber(ARGV[a + 1])
  local w = tonumber(ARGV[a + 2])
  local b = tonumber(ARGV[a + 3])
  local cost = tonumber(ARGV[a + 4])
  local max_wait = tonumber(ARGV[a + 5])
  local mode = ARGV[a + 6]
  local reply

  local capacity = b * w

  -- debt: how far the TAT is ahead of now, scaled (see bucket_debt; the
  -- value written before limits were recorded is read too). A bucket taken
  -- from earlier in this call under the same limit is its debt after that
  -- take, which is what reading back its value would give; under another
  -- limit, its value is read back as any stored one.
  local debt, err
  local tk = taken[key]
  if tk and tk.m == m and tk.w == w and tk.b == b then
    debt = tk.debt
  else
    local v = got[2 * i - 1]
    if tk then v = bucket_value(now, tk.debt, tk.m, tk.w, tk.b) end
    debt, err = bucket_debt(key, v, now, m, w, b, true)
    if not debt then reply = err end
  end

  if not reply then
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

    -- An upstream pause refuses whatever the bucket holds; the bucket's
    -- answer is given as if peeked.
    local paused = 0
    local pu = got[2 * i]
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
      if not tk then order[#order + 1] = key end
      taken[key] = {debt = after, m = m, w = w, b = b}
      if wait > 0 then
        local q, qp = floordiv(after, m), floordiv(debt, m)
        r_tat, r_rem, r_prev, r_prev_rem = now + q, after - q * m, now + qp, debt - qp * m
      end
    end
    reply = {allowed, remaining, retry, reset, wait, r_tat, r_rem, r_prev, r_prev_rem, paused}
  end
  replies[i] = reply
end

for _, key in ipairs(order) do
  local tk = taken[key]
  set_bucket(key, now, tk.debt, ceildiv(tk.debt, tk.m), tk.m, tk.w, tk.b)
end

return replies
