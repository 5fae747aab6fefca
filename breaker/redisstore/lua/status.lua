-- status.lua: describes one breaker without writing (lib.lua is prepended).
-- KEYS: see lib.lua (state, probes, window).
-- ARGV: ARGV[1..5] see lib.lua; ARGV[2] = "" uses the settings stored with
--   the state (for List).
-- Reply: the status array of lib.lua's status():
--   {state, generation (0 without state), consecutive_failures, opened_at_us, probe_successes,
--    probes_in_flight, next_probe_at_us, window_calls, window_failures,
--    now_us, stored settings string}
local now = now_us()
local r = load(now)
if r.fresh then
  r.gen = 0 -- no state: no generation yet (the next Allow or Report gives one)
end
local S
if ARGV[2] == "" then
  S = parse_settings(r.cfg)
else
  S = parse_settings(ARGV[2])
end
return status(r, S, now)
