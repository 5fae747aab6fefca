-- giveback.lua: give back what multi.lua charged on one hash slot when a
-- later slot of the same call refused it (Redis Cluster, keys on several
-- slots). Package limiter/redisstore, multi.go, documents the guarantee.
--
-- KEYS, two per limit i, at 2i+1 and 2i+2: rl (the bucket) and cc (the
-- slots), as in multi.lua.
-- ARGV[1]  now in µs, FOR TESTS ONLY; empty in production (redis TIME)
-- ARGV[2]  the call's slot id
-- then eight per limit, at 2+8i+1 .. 2+8i+8: m w b cost tat tat_rem prev
-- prev_rem, the limit and the state its charge left and found (m = 0: no
-- rate limit, or nothing charged).
--
-- A bucket that still holds exactly the state the charge left goes back to
-- the state it found, as if the call had never come. One that changed since
-- (another call took tokens) is given back min(cost, what the charge still
-- weighs): its debt is lowered by at most how far the state the charge left
-- is still ahead of now, so no refill that happened while the tokens were
-- taken is credited twice. A bucket since used under another limit is left
-- alone. The slot is removed. Reply: the number of limits given back.

local now = now_us(ARGV[1])
local id = ARGV[2]

local given = 0
for i = 0, #KEYS / 2 - 1 do
  local rl, cc = KEYS[2 * i + 1], KEYS[2 * i + 2]
  local a = 2 + 8 * i
  local m, w, b, cost = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], tonumber(ARGV[a + 4])
  local tat, tat_rem, prev, prev_rem = ARGV[a + 5], ARGV[a + 6], tonumber(ARGV[a + 7]), tonumber(ARGV[a + 8])
  local mn = tonumber(m)
  if mn > 0 then
    local v = redis.call("GET", rl)
    if v == table.concat({tat, tat_rem, m, w, b}, ":") then
      if prev < now or (prev == now and prev_rem == 0) then
        redis.call("DEL", rl)
      else
        local reset = ceildiv((prev - now) * mn + prev_rem, mn)
        redis.call("SET", rl, string.format("%d:%d:%s:%s:%s", prev, prev_rem, m, w, b),
          "PX", math.max(ceildiv(reset, 1000), 1))
      end
      given = given + 1
    elseif v then
      local s_tat, s_rem, s_m, s_w, s_b = string.match(v, "^(%d+):(%d+):(%d+):(%d+):(%d+)$")
      if s_tat and s_m == m and s_w == w and s_b == b and tonumber(s_tat) >= now then
        local wn = tonumber(w)
        local debt = (tonumber(s_tat) - now) * mn + tonumber(s_rem)
        local left = (tonumber(tat) - now) * mn + tonumber(tat_rem)
        local back = math.min(cost * wn, math.max(left, 0), debt)
        if back > 0 then
          debt = debt - back
          if debt == 0 then
            redis.call("DEL", rl)
          else
            local q = floordiv(debt, mn)
            redis.call("SET", rl, string.format("%d:%d:%s:%s:%s", now + q, debt - q * mn, m, w, b),
              "PX", math.max(ceildiv(ceildiv(debt, mn), 1000), 1))
          end
          given = given + 1
        end
      end
    end
  end
  if id ~= "" then redis.call("ZREM", cc, id) end
end
return given
