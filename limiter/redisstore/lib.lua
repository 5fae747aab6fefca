-- lib.lua: helpers shared by the limiter's scripts. It is not a script of its
-- own: scripts.go puts in front of each script the functions of this file it
-- calls (and those they call), with their code joined into one line and that
-- line in front of the script's first line (a comment). So line N of
-- lease.lua is line N of what Redis runs, and an error message's
-- "user_script:N" points into the script's own file; an error raised inside
-- the library itself says line 1. For that to be sound: the file holds only
-- "local function" definitions, each closed by an "end" line that is not
-- indented, with comments on lines of their own (never after code); no
-- string spans lines; a function calls only those defined before it.
--
-- Quantities are integers in units of 1/m microsecond ("scaled"), below 2^53
-- so that Lua's doubles hold them exactly. A bucket's value is
-- "tat:rem:m:w:b" (see gcra.lua).

-- now_us returns arg, the time in microseconds since the Unix epoch given
-- FOR TESTS ONLY, or, when arg is "" (production), redis.call("TIME").
local function now_us(arg)
  if arg ~= "" then
    return tonumber(arg)
  end
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- floordiv and ceildiv divide exact integers a >= 0, d > 0; the corrections
-- undo any rounding of the floating-point quotient.
local function floordiv(a, d)
  local q = math.floor(a / d)
  while q * d > a do q = q - 1 end
  while (q + 1) * d <= a do q = q + 1 end
  return q
end

local function ceildiv(a, d)
  local q = floordiv(a, d)
  if q * d < a then q = q + 1 end
  return q
end

-- bucket_debt returns the debt of the bucket value v (GET's reply on key;
-- false when there is none) at now under the limit m w b: how far its TAT is
-- ahead of now, scaled, 0 when it is not. A bucket written under another
-- limit carries over as tokens used (its debt in whole tokens of the old
-- limit, rounded up), at most b: never more than a drained bucket. With old
-- true, the value written before limits were recorded, "tat:rem:m", is read
-- too: its limit is not known, so it is treated as possibly changed, keeping
-- its debt in time but at most a drained bucket. Any other value returns nil
-- and an error reply naming key.
local function bucket_debt(key, v, now, m, w, b, old)
  if not v then
    return 0
  end
  local s_tat, s_rem, s_m, s_w, s_b = string.match(v, "^(%d+):(%d+):(%d+):(%d+):(%d+)$")
  if s_tat then
    local tat, om, ow = tonumber(s_tat), tonumber(s_m), tonumber(s_w)
    if tat < now then
      return 0
    end
    local debt = (tat - now) * om + tonumber(s_rem)
    if om ~= m or ow ~= w or tonumber(s_b) ~= b then
      debt = math.min(ceildiv(debt, ow), b) * w
    end
    return debt
  end
  if old then
    s_tat, s_rem, s_m = string.match(v, "^(%d+):(%d+):(%d+)$")
  end
  if not s_tat then
    return nil, redis.error_reply("limiter: malformed bucket value at " .. key)
  end
  local tat, rem = tonumber(s_tat), tonumber(s_rem)
  if tonumber(s_m) ~= m then
    if rem > 0 then tat = tat + 1 end
    rem = 0
  end
  if tat < now then
    return 0
  end
  return math.min((tat - now) * m + rem, b * w)
end

-- bucket_state returns the state of a bucket with debt at now under m: its
-- TAT, now + debt/m microseconds, as tat and rem (the remainder, below m).
local function bucket_state(now, debt, m)
  local q = floordiv(debt, m)
  return now + q, debt - q * m
end

-- bucket_value is the value of a bucket with debt at now under the limit
-- m w b, and the state it holds, tat and rem. %d formats the (exact, below
-- 2^53) integers through a C long: cheaper than %.0f, and the same digits.
-- (Inline rather than a call of bucket_state: this runs on every decision.)
local function bucket_value(now, debt, m, w, b)
  local q = floordiv(debt, m)
  local tat, rem = now + q, debt - q * m
  return string.format("%d:%d:%d:%d:%d", tat, rem, m, w, b), tat, rem
end

-- set_bucket writes debt (> 0) as the value of bucket key at now under the
-- limit m w b, and returns the state written, tat and rem. The key expires
-- when the bucket is full again, in reset = ceildiv(debt, m) microseconds
-- (the caller's, which it has at hand), rounded up to a whole millisecond.
local function set_bucket(key, now, debt, reset, m, w, b)
  local v, tat, rem = bucket_value(now, debt, m, w, b)
  redis.call("SET", key, v, "PX", math.max(ceildiv(reset, 1000), 1))
  return tat, rem
end

-- pause_left returns how long the upstream pause whose value is pu (GET's
-- reply on its key: its end in µs since the epoch, false when there is
-- none) still runs at now, in microseconds; 0 when it is over.
local function pause_left(pu, now)
  if pu and tonumber(pu) > now then
    return tonumber(pu) - now
  end
  return 0
end
