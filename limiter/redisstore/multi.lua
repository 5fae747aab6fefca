-- multi.lua: one all-or-nothing decision on several limits (package limiter,
-- multi_memory.go's multiStepLocked, is the reference; this mirrors it).
-- Every key of one call is in one hash slot, or Redis is one node.
--
-- KEYS, five per limit i (i = 0..n-1), at 5i+1 .. 5i+5:
--   rl  the bucket, <prefix>rl:{<key>}, "tat:rem:m:w:b" as in gcra.lua
--   up  the upstream pause, <prefix>up:{<key>}: its end, µs since the epoch
--   cc  the slots held, <prefix>cc:{<key>}: ZSET id -> lease end (µs)
--   cq  the slot queue, <prefix>cq:{<key>}: ZSET id -> time queued (µs)
--   cx  the queue places' expiry, <prefix>cx:{<key>}: ZSET id -> expiry (µs)
-- ARGV[1]  mode: "take" or "peek" (decide, change nothing)
-- ARGV[2]  now in µs, FOR TESTS ONLY; empty in production (redis TIME)
-- ARGV[3]  max_wait in µs: the longest the call waits for every rate limit
-- ARGV[4]  the call's slot id (its slots and its queue places); may be ""
-- ARGV[5]  queue: "1" to queue the call for the full concurrency limits
--          when they alone refuse it, else "0"
-- ARGV[6]  the place's lifetime in µs (limiter.TicketTTL)
-- then eight per limit i, at 6+8i+1 .. 6+8i+8:
--   m w b    the rate limit as in gcra.lua; m = 0: no rate limit
--   cost     tokens
--   max_in_flight, lease_us   the concurrency limit; 0 0: none
--   shadow   "1": decided, charged only when the call goes, never refusing
--   reserve  what the bucket keeps back for a limit in lease mode (rate x
--            lease ttl, scaled, as lease.lua's reserve): the call is admitted
--            only when its cost fits in the capacity less it; 0 otherwise
--
-- Reply: {allowed, wait_us, queued, then twelve per limit: verdict (it alone
-- admits the call), remaining, retry_us, reset_us, tat, tat_rem, prev,
-- prev_rem (the state a charge left and found, for a give-back; 0 when not
-- charged), paused, in_flight, slots_full, charged}.

local mode = ARGV[1]
local take = mode == "take"
local now = now_us(ARGV[2])
local max_wait = 0
if take then max_wait = tonumber(ARGV[3]) end
local id = ARGV[4]
local queue = ARGV[5] == "1"
local ticket_ttl = tonumber(ARGV[6])
local n = #KEYS / 5

local items = {}
local wait = 0
for i = 0, n - 1 do
  local a = 6 + 8 * i
  local it = {
    rl = KEYS[5 * i + 1], up = KEYS[5 * i + 2], cc = KEYS[5 * i + 3],
    cq = KEYS[5 * i + 4], cx = KEYS[5 * i + 5],
    m = tonumber(ARGV[a + 1]), w = tonumber(ARGV[a + 2]), b = tonumber(ARGV[a + 3]),
    cost = tonumber(ARGV[a + 4]), mif = tonumber(ARGV[a + 5]), lease = tonumber(ARGV[a + 6]),
    shadow = ARGV[a + 7] == "1", reserve = tonumber(ARGV[a + 8]),
    debt = 0, need = 0, pause = 0, in_use = 0, slot_ok = true,
  }
  it.pause = pause_left(redis.call("GET", it.up), now)
  if it.m > 0 then
    -- As gcra.lua (lib.lua), but without the old three-field value.
    local err
    it.debt, err = bucket_debt(it.rl, redis.call("GET", it.rl), now, it.m, it.w, it.b, false)
    if err then return err end
    local need = it.debt + it.cost * it.w - (it.b * it.w - it.reserve)
    if need > 0 then it.need = ceildiv(need, it.m) end
  end
  if it.mif > 0 then
    if take then
      redis.call("ZREMRANGEBYSCORE", it.cc, "-inf", now)
      local gone = redis.call("ZRANGEBYSCORE", it.cx, "-inf", now, "LIMIT", 0, 256)
      if #gone > 0 then
        redis.call("ZREM", it.cx, unpack(gone))
        redis.call("ZREM", it.cq, unpack(gone))
      end
      it.in_use = redis.call("ZCARD", it.cc)
    else
      it.in_use = redis.call("ZCOUNT", it.cc, "(" .. now, "+inf")
    end
    local ahead
    local rank = nil
    if id ~= "" then rank = redis.call("ZRANK", it.cq, id) end
    if rank then
      ahead = rank
    else
      ahead = redis.call("ZCARD", it.cq)
    end
    if not take and ahead > 0 then
      -- a peek does not clean: count the live places ahead
      local live = 0
      local members = redis.call("ZRANGE", it.cq, 0, ahead - 1)
      for _, mb in ipairs(members) do
        local ex = redis.call("ZSCORE", it.cx, mb)
        if ex and tonumber(ex) > now then live = live + 1 end
      end
      ahead = live
    end
    it.slot_ok = it.in_use + ahead < it.mif
  end
  if not it.shadow and it.need <= max_wait and it.need > wait then wait = it.need end
  items[i + 1] = it
end

local allowed = 1
local only_slots = true
for _, it in ipairs(items) do
  it.refused_r = it.need > wait
  it.verdict = it.pause == 0 and not it.refused_r and it.slot_ok
  if not it.verdict and not it.shadow then
    allowed = 0
    if it.pause > 0 or it.refused_r then only_slots = false end
  end
end

local reply = {allowed, 0, 0}
if allowed == 1 then reply[2] = wait end
for _, it in ipairs(items) do
  local charge = allowed == 1 and it.verdict and take
  local remaining, retry, reset = 0, 0, 0
  local r_tat, r_rem, r_prev, r_prev_rem = 0, 0, 0, 0
  local in_flight, slots_full = it.in_use, 0
  if it.m > 0 then
    local m, w, b = it.m, it.w, it.b
    local after = it.debt
    if charge then
      after = math.max(it.debt, wait * m) + it.cost * w
      r_tat, r_rem = set_bucket(it.rl, now, after, ceildiv(after, m), m, w, b)
      r_prev, r_prev_rem = bucket_state(now, it.debt, m)
    end
    if b * w > after then remaining = floordiv(b * w - after, w) end
    reset = ceildiv(after, m)
    if it.refused_r then retry = it.need end
  end
  if it.mif > 0 then
    if charge then
      local ends = now + wait + it.lease
      redis.call("ZADD", it.cc, ends, id)
      local last = redis.call("ZRANGE", it.cc, -1, -1, "WITHSCORES")
      redis.call("PEXPIRE", it.cc, math.max(ceildiv(tonumber(last[2]) - now, 1000), 1))
      in_flight = in_flight + 1
    end
    if take and allowed == 1 and id ~= "" then
      redis.call("ZREM", it.cq, id)
      redis.call("ZREM", it.cx, id)
    end
    if not it.slot_ok then
      slots_full = 1
      local first = redis.call("ZRANGE", it.cc, 0, 0, "WITHSCORES")
      local hint = 1000
      if #first == 2 then hint = math.max(tonumber(first[2]) - now, 1000) end
      retry = math.max(retry, hint)
    end
  end
  local paused = 0
  if it.pause > 0 then
    paused = 1
    retry = math.max(retry, it.pause)
  end
  local v, c = 0, 0
  if it.verdict then v = 1 end
  if charge then c = 1 end
  local k = #reply
  reply[k + 1], reply[k + 2], reply[k + 3], reply[k + 4] = v, remaining, retry, reset
  reply[k + 5], reply[k + 6], reply[k + 7], reply[k + 8] = r_tat, r_rem, r_prev, r_prev_rem
  reply[k + 9], reply[k + 10], reply[k + 11], reply[k + 12] = paused, in_flight, slots_full, c
end

if allowed == 0 and take and queue and only_slots and id ~= "" then
  for _, it in ipairs(items) do
    if it.mif > 0 and not it.shadow and not it.slot_ok then
      redis.call("ZADD", it.cq, "NX", now, id)
      redis.call("ZADD", it.cx, now + ticket_ttl, id)
      local ms = math.max(ceildiv(ticket_ttl, 1000), 1)
      redis.call("PEXPIRE", it.cq, ms)
      redis.call("PEXPIRE", it.cx, ms)
    end
  end
  reply[3] = 1
end

return reply
