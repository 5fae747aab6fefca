-- allow.lua: decides whether one call may go (lib.lua is prepended).
-- KEYS: see lib.lua (state, probes, window).
-- ARGV: ARGV[1..5] see lib.lua.
-- Reply: {allowed 0|1, state, generation (string), permit id ("" unless a
--         probe), retry_after_us (string), probe_deadline_us (string, "0"
--         unless a probe), now_us (string)}
local now = now_us()
local S = parse_settings(ARGV[2])
local r = load(now)
if r.st == CLOSED then
  if r.fresh then
    save(r, S)
  else
    touch()
  end
  return { 1, CLOSED, num(r.gen), "", "0", "0", num(now) }
end
if r.st == OPEN then
  local at = r.opened + S.recovery
  if now < at then
    return { 0, OPEN, num(r.gen), "", num(at - now), "0", num(now) }
  end
  transition(r, HALF, now, "recovery_timeout")
end
-- HALF_OPEN: reclaim expired leases (deadline <= now), then admit if a slot is free.
redis.call("ZREMRANGEBYSCORE", K_PROBES, "-inf", num(now))
if redis.call("ZCARD", K_PROBES) < S.max_probes then
  r.seq = r.seq + 1
  local id = num(r.gen) .. "." .. num(r.seq)
  local deadline = now + S.probe_timeout
  redis.call("ZADD", K_PROBES, num(deadline), id)
  save(r, S)
  return { 1, HALF, num(r.gen), id, "0", num(deadline), num(now) }
end
local first = redis.call("ZRANGE", K_PROBES, 0, 0, "WITHSCORES")
return { 0, HALF, num(r.gen), "", num(tonumber(first[2]) - now), "0", num(now) }
