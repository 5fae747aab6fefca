-- lib.lua: helpers shared by allow.lua, report.lua, reset.lua and status.lua.
-- The Go package prepends this file to each of them; it is not a script of its
-- own. The rules mirror breaker/machine.go: keep them in step.
--
-- KEYS (all share the hash tag {<name>}):
--   KEYS[1] state hash  <prefix>br:{<name>}:s  fields st, gen, fail, opened, succ, seq, cfg
--   KEYS[2] probes zset <prefix>br:{<name>}:p  member permit id, score lease deadline (µs)
--   KEYS[3] window hash <prefix>br:{<name>}:w  fields "<bucket>c" / "<bucket>f" (calls / failures)
-- Common ARGV:
--   ARGV[1]  now in µs since the epoch, or "" to read redis TIME (production)
--   ARGV[2]  settings "mode,failure_threshold,failure_rate_threshold,window_us,
--            minimum_calls,recovery_us,half_open_max_calls,success_threshold,
--            probe_timeout_us", or "" (status.lua only) to use the stored cfg
--   ARGV[3]  key TTL in ms, set on every write
--   ARGV[4]  breaker name (for events)
--   ARGV[5]  events channel
-- Times are µs since the epoch (< 2^53, exact in Lua doubles); they are
-- formatted with "%.0f" so that no precision is lost.
local K_STATE, K_PROBES, K_WIN = KEYS[1], KEYS[2], KEYS[3]
local CLOSED, OPEN, HALF = 0, 1, 2
local BUCKETS = 10

local function num(x)
  return string.format("%.0f", x)
end

local function now_us()
  if ARGV[1] ~= "" then
    return tonumber(ARGV[1])
  end
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- parse_settings reads the comma-separated settings string.
local function parse_settings(cfg)
  local v = {}
  for f in string.gmatch(cfg or "", "[^,]+") do
    v[#v + 1] = tonumber(f)
  end
  return {
    mode = v[1] or 0, threshold = v[2] or 0, rate = v[3] or 1, window = v[4] or 0,
    min_calls = v[5] or 0, recovery = v[6] or 0, max_probes = v[7] or 1,
    successes = v[8] or 1, probe_timeout = v[9] or 0, cfg = cfg or "",
  }
end

-- load reads the state. A breaker without state (never used, expired, or
-- lost with Redis's data) is CLOSED at generation `now` (µs of Redis TIME)
-- with r.fresh set; the scripts that answer with its generation save it
-- (keep), so the generation a caller gets is the one stored. A breaker
-- changes state at most once per script, and Redis runs scripts one at a
-- time, each taking well over a microsecond, so a generation never gets more
-- than one ahead of the clock: a state created after a data loss starts
-- above every generation of the lost one.
local function load(now)
  local v = redis.call("HMGET", K_STATE, "st", "gen", "fail", "opened", "succ", "seq", "cfg")
  local r = {
    st = tonumber(v[1]) or CLOSED, gen = tonumber(v[2]), fail = tonumber(v[3]) or 0,
    opened = tonumber(v[4]) or 0, succ = tonumber(v[5]) or 0, seq = tonumber(v[6]) or 0,
    cfg = v[7],
  }
  if r.gen == nil then
    r.st, r.gen, r.fresh = CLOSED, now, true
  end
  return r
end

local function save(r, S)
  redis.call("HSET", K_STATE, "st", num(r.st), "gen", num(r.gen), "fail", num(r.fail),
    "opened", num(r.opened), "succ", num(r.succ), "seq", num(r.seq), "cfg", S.cfg)
  local ttl = ARGV[3]
  redis.call("PEXPIRE", K_STATE, ttl)
  redis.call("PEXPIRE", K_PROBES, ttl)
  redis.call("PEXPIRE", K_WIN, ttl)
end

-- keep saves a fresh state (see load), so that its generation is stored.
local function keep(r, S)
  if r.fresh then
    save(r, S)
    r.fresh = false
  end
end

-- touch renews the TTL of a breaker in use (at most once per half TTL), so
-- that its generation does not change under its callers while they only
-- read it.
local function touch()
  local ttl = tonumber(ARGV[3])
  if redis.call("PTTL", K_STATE) < ttl / 2 then
    redis.call("PEXPIRE", K_STATE, ttl)
    redis.call("PEXPIRE", K_PROBES, ttl)
    redis.call("PEXPIRE", K_WIN, ttl)
  end
end

-- transition moves r to state `to`, clears counters, probes and window, and
-- publishes the event. The caller saves r.
local function transition(r, to, now, reason)
  local from = r.st
  r.st = to
  r.gen = r.gen + 1
  r.fail = 0
  r.succ = 0
  if to == OPEN then
    r.opened = now
  end
  redis.call("DEL", K_PROBES, K_WIN)
  redis.call("PUBLISH", ARGV[5], string.format('{"n":%s,"f":%d,"t":%d,"g":%s,"a":%s,"r":"%s"}',
    cjson.encode(ARGV[4]), from, to, num(r.gen), num(now), reason))
end

-- window sums the buckets in (idx-BUCKETS, idx]; prune deletes older ones.
local function window(idx, prune)
  local all = redis.call("HGETALL", K_WIN)
  local calls, fails = 0, 0
  for i = 1, #all, 2 do
    local field = all[i]
    local b = tonumber(string.sub(field, 1, -2))
    if b == nil or b <= idx - BUCKETS then
      if prune then
        redis.call("HDEL", K_WIN, field)
      end
    elseif string.sub(field, -1) == "c" then
      calls = calls + tonumber(all[i + 1])
    else
      fails = fails + tonumber(all[i + 1])
    end
  end
  return calls, fails
end

-- status returns {st, gen, fail, opened, succ, probes_in_flight,
-- next_probe_at, window_calls, window_failures, now, cfg} without writing.
local function status(r, S, now)
  local inflight, next_at, wc, wf = 0, 0, 0, 0
  if r.st == OPEN then
    next_at = r.opened + S.recovery
  elseif r.st == HALF then
    inflight = redis.call("ZCOUNT", K_PROBES, "(" .. num(now), "+inf")
    if inflight < S.max_probes then
      next_at = now
    else
      local first = redis.call("ZRANGEBYSCORE", K_PROBES, "(" .. num(now), "+inf", "WITHSCORES", "LIMIT", 0, 1)
      next_at = tonumber(first[2])
    end
  elseif S.mode == 1 and S.window >= BUCKETS then
    wc, wf = window(math.floor(now / math.floor(S.window / BUCKETS)), false)
  end
  return { r.st, num(r.gen), num(r.fail), num(r.opened), num(r.succ), inflight, num(next_at),
    num(wc), num(wf), num(now), S.cfg }
end
