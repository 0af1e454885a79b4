-- commerce_confirm: KEYS res pay odocs; ARGV user rid payment_id. The buyer asks for the order of
-- a reservation: it exists only once the payment was verified (commerce_paid). Replies
-- {'order', doc} | {'payment_required', payment} | {'reservation_expired'} | {'not_found'}.
--! include sale_common
local rec = redis.call('HGET', KEYS[1], ARGV[2])
if not rec then return {'not_found'} end
local f = split(rec)
if f[2] ~= ARGV[1] then return {'not_found'} end
if f[1] == 'confirmed' then return {'order', redis.call('HGET', KEYS[3], f[5]) or ''} end
if f[1] ~= 'held' then return {'reservation_expired'} end
local p = redis.call('HGET', KEYS[2], ARGV[3])
if not p or f[6] ~= ARGV[3] then return {'payment_required', ''} end
return {'payment_required', p}
