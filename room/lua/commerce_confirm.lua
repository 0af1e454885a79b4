-- commerce_confirm: KEYS inv res exp userh orders spent buyer_orders buyer_docs; ARGV now user rid
-- payment_ref order_id quota_annual. Moves a live hold to sold and appends the order, in one
-- step: a 200 to the client means the order is in Redis (and in the AOF with fsync always).
--! include sale_common
local inv, res, exp, userh, orders = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local spent, border, bdocs = KEYS[6], KEYS[7], KEYS[8]
local now, user, rid, oid = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[5]
local rec = redis.call('HGET', res, rid)
if not rec then return {'not_found'} end
local f = split(rec)
if f[2] ~= user then return {'not_found'} end
if f[1] == 'confirmed' then return {'existing', redis.call('HGET', bdocs, f[5]) or ''} end
if f[1] ~= 'held' then return {'reservation_expired'} end
local function refuse(code)
  local s = snapshot(inv); s[#s + 1] = ''; return {code, '', unpack(s)}
end
if num(f[4]) <= now then
  release(inv, res, exp, userh, rid, 'expired')
  return refuse('reservation_expired')
end
local q = num(f[3])
local amount = num(redis.call('HGET', inv, 'price_cny_fen')) * q
if num(redis.call('GET', spent)) + amount > tonumber(ARGV[6]) then
  release(inv, res, exp, userh, rid, 'released')
  return refuse('quota_exceeded')
end
redis.call('HINCRBY', inv, 'held', -q)
redis.call('HINCRBY', inv, 'sold', q)
redis.call('HINCRBY', inv, 'ver', 1)
redis.call('ZREM', exp, rid)
f[1], f[5] = 'confirmed', oid
redis.call('HSET', res, rid, table.concat(f, '|'))
local doc = cjson.encode({order_id = oid, sale = redis.call('HGET', inv, 'id'),
  sku = redis.call('HGET', inv, 'sku'), channel = redis.call('HGET', inv, 'channel'),
  pavilion = redis.call('HGET', inv, 'pavilion'), qty = q, amount_cny_fen = amount,
  created_at_ms = now, user = user, reservation_id = rid, payment_ref = ARGV[4]})
redis.call('XADD', orders, '*', 'o', doc)
redis.call('INCRBY', spent, amount)
redis.call('EXPIRE', spent, 34560000)
redis.call('ZADD', border, now, oid)
redis.call('HSET', bdocs, oid, doc)
local ev = ''
if num(redis.call('HGET', inv, 'sold')) >= num(redis.call('HGET', inv, 'quantity')) then
  if redis.call('HGET', inv, 'state') ~= 'ended' then
    redis.call('HSET', inv, 'state', 'ended')
    ev = 'sold_out'
  end
end
local s = snapshot(inv)
s[#s + 1] = ev
return {'ok', doc, unpack(s)}
