-- commerce_control: KEYS inv; ARGV now action(start|stop). Replies {status, snapshot..., event}.
--! include sale_common
local inv, now, action = KEYS[1], tonumber(ARGV[1]), ARGV[2]
if redis.call('EXISTS', inv) == 0 then return {'not_found'} end
local st = redis.call('HGET', inv, 'state')
local ev = ''
if action == 'start' then
  if st == 'ended' then local s = snapshot(inv); s[#s + 1] = ''; return {'conflict', unpack(s)} end
  if st == 'scheduled' then
    redis.call('HSET', inv, 'state', 'active', 'starts_at_ms', now)
    ev = 'started'
  end
else
  if st ~= 'ended' then
    redis.call('HSET', inv, 'state', 'ended', 'ends_at_ms', now)
    ev = 'ended'
  end
end
if ev ~= '' then redis.call('HINCRBY', inv, 'ver', 1) end
local s = snapshot(inv)
s[#s + 1] = ev
return {'ok', unpack(s)}
