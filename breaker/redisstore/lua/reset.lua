-- reset.lua: forces a state, an operator's action (lib.lua is prepended).
-- KEYS: see lib.lua (state, probes, window).
-- ARGV: ARGV[1..5] see lib.lua; ARGV[6] target state: 0 CLOSED or 1 OPEN.
-- Reply: the status array of lib.lua's status().
local now = now_us()
local S = parse_settings(ARGV[2])
local r = load(now)
transition(r, tonumber(ARGV[6]), now, "reset")
save(r, S)
return status(r, S, now)
