-- commerce_paid: KEYS inv res exp userh orders pay odocs border pavorders spent outbox refunds;
-- ARGV now payment_id rid order_id transaction_id paid_total quota_annual guid. A payment the
-- server verified (a signed notification, or its own query of the provider): the hold becomes
-- an order, durably, in this one step, and the order joins the customs outbox. A success the
-- order cannot honour (the hold is gone, the amount differs, the person's quota is used up)
-- joins the refund outbox instead. Replies {'order', doc, snapshot..., event} | {'repeat', doc}
-- | {'refund', payment} | {'refunded', payment} | {'unknown'}.
--! include sale_common
local inv, res, exp, userh, orders = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local pay, odocs, border, pavorders = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local spent, outbox, refunds = KEYS[10], KEYS[11], KEYS[12]
local now, pid, rid, oid, tx = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local raw = redis.call('HGET', pay, pid)
if not raw then return {'unknown'} end
local p = cjson.decode(raw)
if p.state == 'paid' then return {'repeat', redis.call('HGET', odocs, p.order_id) or ''} end
if p.state ~= 'pending' then return {'refunded', raw} end
p.transaction_id = tx
p.paid_at_ms = now
local function refund(reason)
  p.state = 'refund_pending'
  p.refund = {state = 'pending', reason = reason, amount_cny_fen = tonumber(ARGV[6]), at_ms = now}
  local out = cjson.encode(p)
  redis.call('HSET', pay, pid, out)
  redis.call('XADD', refunds, '*', 'payment', pid, 'sale', p.sale)
  return {'refund', out}
end
if tonumber(ARGV[6]) ~= p.amount_cny_fen then return refund('amount_mismatch') end
local rec = redis.call('HGET', res, rid)
if not rec then return refund('hold_released') end
local f = split(rec)
if f[1] ~= 'held' then return refund('hold_released') end
if num(redis.call('GET', spent)) + p.quota_cny_fen > tonumber(ARGV[7]) then
  release(inv, res, exp, userh, rid, 'released')
  return refund('quota_exceeded')
end
local q = num(f[3])
redis.call('HINCRBY', inv, 'held', -q)
redis.call('HINCRBY', inv, 'sold', q)
redis.call('HINCRBY', inv, 'ver', 1)
redis.call('ZREM', exp, rid)
f[1], f[5] = 'confirmed', oid
redis.call('HSET', res, rid, table.concat(f, '|'))
local doc = {order_id = oid, sale = p.sale, sku = p.sku, channel = p.channel,
  pavilion = p.pavilion, qty = q, price_cny_fen = p.price_cny_fen,
  amount_cny_fen = p.amount_cny_fen, breakdown = p.breakdown, state = 'paid',
  created_at_ms = now, updated_at_ms = now, user = p.user, reservation_id = rid,
  payment_id = pid, payment_ref = pid, provider = p.provider, transaction_id = tx,
  buyer = p.buyer, consignee = p.consignee,
  declaration = {state = 'queued', guid = ARGV[8], receipt = cjson.null, reason = cjson.null,
    attempts = 0, updated_at_ms = now},
  shipment = cjson.null, refund = cjson.null}
local out = cjson.encode(doc)
redis.call('HSET', odocs, oid, out)
redis.call('XADD', orders, '*', 'o', out)
redis.call('INCRBY', spent, p.quota_cny_fen)
redis.call('EXPIRE', spent, 34560000)
redis.call('ZADD', border, now, oid)
redis.call('ZADD', pavorders, now, oid)
redis.call('XADD', outbox, '*', 'order', oid, 'sale', p.sale)
p.state, p.order_id = 'paid', oid
redis.call('HSET', pay, pid, cjson.encode(p))
local ev = ''
if num(redis.call('HGET', inv, 'sold')) >= num(redis.call('HGET', inv, 'quantity')) then
  if redis.call('HGET', inv, 'state') ~= 'ended' then
    redis.call('HSET', inv, 'state', 'ended')
    ev = 'sold_out'
  end
end
local s = snapshot(inv)
s[#s + 1] = ev
return {'order', out, unpack(s)}
