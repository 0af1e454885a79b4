-- chat_presence: KEYS: presence hash. ARGV: node id, its viewers, now_ms, ms after which a silent node's
-- count no longer counts. Returns the viewers of every live node.
local now, stale = tonumber(ARGV[3]), tonumber(ARGV[4])
if ARGV[2] == '0' then redis.call('HDEL', KEYS[1], ARGV[1])
else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[3]) end
local all = redis.call('HGETALL', KEYS[1])
local sum = 0
for i = 1, #all, 2 do
  local n, ts = string.match(all[i + 1], '^(%d+):(%d+)$')
  if n and tonumber(ts) + stale >= now then sum = sum + tonumber(n)
  else redis.call('HDEL', KEYS[1], all[i]) end
end
if #all > 0 then redis.call('PEXPIRE', KEYS[1], stale * 4) end
return sum
