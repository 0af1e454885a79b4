-- commerce_sweep: KEYS inv res exp userh; ARGV now max. Time transitions and expired holds, run by every
-- commerce node's timer; idempotent. Replies {released, snapshot..., event}.
--! include sale_common
local inv, res, exp, userh = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = tonumber(ARGV[1])
if redis.call('EXISTS', inv) == 0 then return {0, false, false, false, false, false, false, ''} end
local _, ev = transition(inv, now)
local n = sweep(inv, res, exp, userh, now, tonumber(ARGV[2]))
local s = snapshot(inv)
s[#s + 1] = ev
return {n, unpack(s)}
