-- commerce_release: KEYS inv res exp userh; ARGV now user rid. DELETE of a reservation by its owner.
--! include sale_common
local inv, res, exp, userh = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local user, rid = ARGV[2], ARGV[3]
local rec = redis.call('HGET', res, rid)
if not rec then return {'not_found'} end
local f = split(rec)
if f[2] ~= user then return {'not_found'} end
if f[1] == 'confirmed' then return {'conflict'} end
release(inv, res, exp, userh, rid, 'released')
local s = snapshot(inv)
s[#s + 1] = ''
return {'ok', '', unpack(s)}
