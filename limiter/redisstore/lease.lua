-- lease.lua: lend tokens of one token bucket to one replica (lease mode;
-- package limiter, lease.go's leaseStep, is the reference and this mirrors it
-- line for line).
--
-- KEYS[1]  the bucket key, <prefix>rl:{<key>}, as in gcra.lua ("tat:rem:m:w:b")
-- KEYS[2]  the key's upstream pause, <prefix>up:{<key>} (same hash slot), as
--          in gcra.lua: while it holds an instant still to come, nothing is
--          lent or reserved, and retry_us is at least the pause's remainder
-- ARGV[1]  m: refill is m tokens per w microseconds, in lowest terms
-- ARGV[2]  w
-- ARGV[3]  b: capacity in tokens (the effective burst)
-- ARGV[4]  reserve: the lease ttl in microseconds times m (rate x ttl, scaled);
--          never lent, so that tokens used up to a ttl after they were lent
--          stay within the limit. The caller keeps it <= b*w - w.
-- ARGV[5]  need: the fewest tokens worth lending now, >= 1
-- ARGV[6]  want: the most tokens to take, >= need
-- ARGV[7]  cost: what to reserve when need is not there now, >= need
-- ARGV[8]  max_wait in whole microseconds (0: never reserve)
-- ARGV[9]  give_tat, ARGV[10] give_rem, ARGV[11] give_tokens: an earlier
--          lease's state and its unused tokens, given back first when the key
--          still holds exactly that state (nothing taken since) and the
--          bucket is not full; give_tokens 0 gives back nothing
-- ARGV[12] now in microseconds since the Unix epoch, FOR TESTS ONLY; empty in
--          production, where the clock is redis.call("TIME") and nothing else
--
-- Quantities are integers in units of 1/m microsecond ("scaled"), below 2^53.
--
-- Reply: {allowed (0|1), tokens taken, remaining tokens, retry_after_us,
--         reset_after_us, wait_us, tat, tat_rem, prev, prev_rem, gave_back}:
--         tat:tat_rem is the state left when anything was taken (0 otherwise);
--         prev:prev_rem the state a reservation (wait_us > 0) found, for
--         cancel.lua; gave_back 1 when the give-back was made; paused 1
--         when the upstream pause refused the lease (the give-back is made
--         all the same).

local key = KEYS[1]
local m = tonumber(ARGV[1])
local w = tonumber(ARGV[2])
local b = tonumber(ARGV[3])
local reserve = tonumber(ARGV[4])
local need = tonumber(ARGV[5])
local want = tonumber(ARGV[6])
local cost = tonumber(ARGV[7])
local max_wait = tonumber(ARGV[8])
local give_tokens = tonumber(ARGV[11])

local now = now_us(ARGV[12])

local capacity = b * w
-- The bucket and the pause in one read.
local got = redis.call("MGET", key, KEYS[2])
local v = got[1]
local changed = false
local gave = 0
local debt = 0

-- The give-back: the value is compared as the digits this script wrote.
if give_tokens > 0 and v and v == table.concat({ARGV[9], ARGV[10], ARGV[1], ARGV[2], ARGV[3]}, ":") then
  local tat, rem = tonumber(ARGV[9]), tonumber(ARGV[10])
  if tat > now or (tat == now and rem > 0) then
    debt = math.max((tat - now) * m + rem - give_tokens * w, 0)
    gave, changed = 1, true
    v = nil -- decided below from debt, under this very limit
  end
end

if v then
  -- As gcra.lua: a bucket written under another limit carries over as
  -- tokens used, at most b (lib.lua).
  local err
  debt, err = bucket_debt(key, v, now, m, w, b, true)
  if err then return err end
end

local lendable = capacity - reserve
local allowed, tokens, retry, wait = 0, 0, 0, 0
local after = debt
local avail = -1
if debt <= lendable then avail = floordiv(lendable - debt, w) end
local t_need = ceildiv(math.max(debt + need * w - lendable, 0), m)
local pause = pause_left(got[2], now)
local paused = 0
if pause > 0 then
  paused = 1
  retry = math.max(t_need, pause)
elseif avail >= need then
  allowed = 1
  tokens = math.min(want, avail)
  after = debt + tokens * w
else
  local t = ceildiv(math.max(debt + cost * w - lendable, 0), m)
  if t > 0 and t <= max_wait then
    allowed = 1
    tokens = cost
    wait = t
    after = math.max(debt, t * m) + cost * w
  else
    retry = t_need
  end
end

local remaining = 0
if capacity > after then remaining = floordiv(capacity - after, w) end
local reset = ceildiv(after, m)

local r_tat, r_rem, r_prev, r_prev_rem = 0, 0, 0, 0
if allowed == 1 then
  r_tat, r_rem = bucket_state(now, after, m)
  if wait > 0 then
    r_prev, r_prev_rem = bucket_state(now, debt, m)
  end
  changed = true
end
if changed then
  if after == 0 then
    redis.call("DEL", key)
  else
    set_bucket(key, now, after, reset, m, w, b)
  end
end

return {allowed, tokens, remaining, retry, reset, wait, r_tat, r_rem, r_prev, r_prev_rem, gave, paused}
