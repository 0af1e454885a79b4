-- sale_common: helpers included by every sale script. A reservation record is one hash field:
-- "state|user|qty|expires_ms|order_id" (ids never contain '|'). Redis answers false for a
-- missing field: every read goes through tonumber(x or 0) or an explicit check.
local function split(rec)
  local f = {}
  for part in string.gmatch(rec .. '|', '([^|]*)|') do f[#f + 1] = part end
  return f
end
local function num(v) return tonumber(v or 0) or 0 end
local function snapshot(inv)
  return redis.call('HMGET', inv, 'state', 'quantity', 'available', 'held', 'sold', 'ver')
end
-- scheduled -> active at starts_at_ms; active -> ended at ends_at_ms. Returns state, event.
local function transition(inv, now)
  local st = redis.call('HGET', inv, 'state')
  local ev = ''
  if st == 'scheduled' and num(redis.call('HGET', inv, 'starts_at_ms')) <= now then
    redis.call('HSET', inv, 'state', 'active')
    redis.call('HINCRBY', inv, 'ver', 1)
    st, ev = 'active', 'started'
  end
  if st == 'active' then
    local e = num(redis.call('HGET', inv, 'ends_at_ms'))
    if e > 0 and e <= now then
      redis.call('HSET', inv, 'state', 'ended')
      redis.call('HINCRBY', inv, 'ver', 1)
      st, ev = 'ended', 'ended'
    end
  end
  return st, ev
end
-- Return a held reservation's units to available; newstate is 'expired' or 'released'.
local function release(inv, res, exp, userh, rid, newstate)
  redis.call('ZREM', exp, rid)
  local rec = redis.call('HGET', res, rid)
  if not rec then return false end
  local f = split(rec)
  if f[1] ~= 'held' then return false end
  local q = num(f[3])
  redis.call('HINCRBY', inv, 'held', -q)
  redis.call('HINCRBY', inv, 'available', q)
  redis.call('HINCRBY', inv, 'ver', 1)
  if redis.call('HINCRBY', userh, f[2], -q) <= 0 then redis.call('HDEL', userh, f[2]) end
  f[1] = newstate
  redis.call('HSET', res, rid, table.concat(f, '|'))
  return true
end
local function sweep(inv, res, exp, userh, now, max)
  local ids = redis.call('ZRANGEBYSCORE', exp, '-inf', now, 'LIMIT', 0, max)
  local n = 0
  for _, rid in ipairs(ids) do
    if release(inv, res, exp, userh, rid, 'expired') then n = n + 1 end
  end
  return n
end
