-- commerce_reserve: KEYS inv res exp userh idem; ARGV now user qty rid lazy_max quota_annual
-- quota_order idem_ttl_s. Checks state, qty, the per-order quota, per-user limit, stock; moves
-- qty from available to held. (The annual quota is per person, checked once the buyer's
-- identity is known: commerce_pay, commerce_paid.) Replies {status, rid, record, snapshot..., event}.
--! include sale_common
local inv, res, exp, userh, idem = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now, user, qty, rid = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4]
if redis.call('EXISTS', inv) == 0 then return {'not_found'} end
local prior = redis.call('GET', idem)
if prior then
  local rec = redis.call('HGET', res, prior) or ''
  return {'existing', prior, rec, unpack(snapshot(inv))}
end
local st, ev = transition(inv, now)
sweep(inv, res, exp, userh, now, tonumber(ARGV[5]))
local function refuse(code) local s = snapshot(inv); s[#s + 1] = ev; return {code, '', '', unpack(s)} end
if st ~= 'active' then
  -- a sale that ended by selling out tells a late buyer so, not that it is merely over
  if st == 'ended' and num(redis.call('HGET', inv, 'sold')) >= num(redis.call('HGET', inv, 'quantity')) then
    return refuse('sold_out')
  end
  return refuse('sale_not_active')
end
local limit = num(redis.call('HGET', inv, 'per_user_limit'))
if qty < 1 or qty > limit then return refuse('bad_qty') end
local amount = num(redis.call('HGET', inv, 'price_cny_fen')) * qty
if amount > tonumber(ARGV[7]) then return refuse('quota_order') end
if num(redis.call('HGET', userh, user)) + qty > limit then return refuse('limit_exceeded') end
if num(redis.call('HGET', inv, 'available')) < qty then return refuse('sold_out') end
redis.call('HINCRBY', inv, 'available', -qty)
redis.call('HINCRBY', inv, 'held', qty)
redis.call('HINCRBY', inv, 'ver', 1)
redis.call('HINCRBY', userh, user, qty)
local expires = now + num(redis.call('HGET', inv, 'hold_ttl_ms'))
local rec = table.concat({'held', user, qty, expires, ''}, '|')
redis.call('HSET', res, rid, rec)
redis.call('ZADD', exp, expires, rid)
redis.call('SET', idem, rid, 'EX', tonumber(ARGV[8]))
local s = snapshot(inv)
s[#s + 1] = ev
return {'ok', rid, rec, unpack(s)}
