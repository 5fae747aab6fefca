-- report.lua: records the outcome of one call (lib.lua is prepended).
-- KEYS: see lib.lua (state, probes, window).
-- ARGV: ARGV[1..5] see lib.lua;
--   ARGV[6] outcome: 1 success, 2 failure
--   ARGV[7] generation of the call (decimal string; "0" = current)
--   ARGV[8] permit id ("" when not a probe; "!" for a malformed one)
-- Reply: {counted 0|1, state, generation (string), ignored reason ("" when counted)}
local now = now_us()
local S = parse_settings(ARGV[2])
local outcome, g, permit = tonumber(ARGV[6]), ARGV[7], ARGV[8]
local r = load(now)
keep(r, S)
if g ~= "0" and g ~= num(r.gen) then
  return { 0, r.st, num(r.gen), "stale_generation" }
end
-- A permit carries the generation that issued it ("<gen>.<seq>"): a permit of
-- another generation is stale whatever ARGV[7] says ("0" included), and a
-- permit is only ever live in HALF_OPEN. The Go side has replaced a permit
-- that breaker.ParsePermitID rejects with "!", which matches no pattern.
if permit ~= "" then
  local pg = string.match(permit, "^([1-9]%d*)%.[1-9]%d*$")
  if pg == nil then
    return { 0, r.st, num(r.gen), "no_permit" }
  end
  if pg ~= num(r.gen) then
    return { 0, r.st, num(r.gen), "stale_generation" }
  end
  if r.st == CLOSED then
    return { 0, CLOSED, num(r.gen), "no_permit" }
  end
end
if r.st == OPEN then
  return { 0, OPEN, num(r.gen), "open" }
end
if r.st == HALF then
  redis.call("ZREMRANGEBYSCORE", K_PROBES, "-inf", num(now))
  if permit == "" or redis.call("ZREM", K_PROBES, permit) == 0 then
    return { 0, HALF, num(r.gen), "no_permit" }
  end
  if outcome == 1 then
    r.succ = r.succ + 1
    if r.succ >= S.successes then
      transition(r, CLOSED, now, "probe_succeeded")
    end
  else
    transition(r, OPEN, now, "probe_failed")
  end
  save(r, S)
  return { 1, r.st, num(r.gen), "" }
end
-- CLOSED
if outcome == 1 then
  if S.mode == 0 and r.fail == 0 then
    -- the common case: nothing to write
    touch()
    return { 1, CLOSED, num(r.gen), "" }
  end
  r.fail = 0
else
  r.fail = r.fail + 1
end
if S.mode == 0 then
  if r.fail >= S.threshold then
    transition(r, OPEN, now, "failure_threshold")
  end
else
  local idx = math.floor(now / math.floor(S.window / BUCKETS))
  redis.call("HINCRBY", K_WIN, num(idx) .. "c", 1)
  if outcome ~= 1 then
    redis.call("HINCRBY", K_WIN, num(idx) .. "f", 1)
  end
  local calls, fails = window(idx, true)
  if calls >= S.min_calls and fails >= S.rate * calls then
    transition(r, OPEN, now, "failure_rate")
  end
end
save(r, S)
return { 1, r.st, num(r.gen), "" }
