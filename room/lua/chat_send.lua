-- chat_send: KEYS: history, mute, ban, rate. ARGV: pub channel, event text, maxlen, now_ms, bucket
-- capacity, milliseconds per token. Returns {'ok', id} | {'banned'} | {'muted', pttl} |
-- {'rate_limited', retry_after_ms}.
--! include room_emit
if redis.call('EXISTS', KEYS[3]) == 1 then return {'banned'} end
local mute = redis.call('PTTL', KEYS[2])
if mute ~= -2 then return {'muted', tostring(mute)} end
local now = tonumber(ARGV[4])
local cap = tonumber(ARGV[5])
local per = tonumber(ARGV[6])
local b = redis.call('HMGET', KEYS[4], 't', 'ts')
local tokens = tonumber(b[1]) or cap
local ts = tonumber(b[2]) or now
if now > ts then tokens = math.min(cap, tokens + (now - ts) / per); ts = now end
if tokens < 1 then return {'rate_limited', tostring(math.ceil((1 - tokens) * per))} end
redis.call('HSET', KEYS[4], 't', tostring(tokens - 1), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[4], math.ceil(cap * per) + 1000)
local id = room_emit(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return {'ok', id}
