-- commerce_pay: KEYS inv res exp pay userh; ARGV now user rid payment_id doc qty price min_hold_ms
-- grace_ms. Opens the payment of a held reservation: stores the payment (doc, made by the
-- server with every amount) and stretches the hold so the buyer has min_hold_ms to pay. The
-- sweeper keeps a hold with a payment until grace_ms past its expiry, the time a success the
-- provider took just before the expiry needs to reach us. Replies {'ok', doc} | {'existing',
-- doc} | {'not_found'} | {'reservation_expired'} | {'changed'}.
--! include sale_common
local inv, res, exp, pay, userh = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now, user, rid, pid = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local rec = redis.call('HGET', res, rid)
if not rec then return {'not_found'} end
local f = split(rec)
if f[2] ~= user then return {'not_found'} end
local prior = redis.call('HGET', pay, pid)
if prior then return {'existing', prior} end
if f[1] ~= 'held' then return {'reservation_expired'} end
if num(f[4]) <= now then
  release(inv, res, exp, userh, rid, 'expired')
  return {'reservation_expired'}
end
if num(f[3]) ~= tonumber(ARGV[6]) or num(redis.call('HGET', inv, 'price_cny_fen')) ~= tonumber(ARGV[7]) then
  return {'changed'}
end
local expires = math.max(num(f[4]), now + tonumber(ARGV[8]))
f[4] = expires
f[6] = pid
redis.call('HSET', res, rid, table.concat(f, '|'))
redis.call('ZADD', exp, expires + tonumber(ARGV[9]), rid)
local doc = cjson.decode(ARGV[5])
doc.expires_at_ms = expires
doc.created_at_ms = now
doc.state = 'pending'
local out = cjson.encode(doc)
redis.call('HSET', pay, pid, out)
return {'ok', out}
