-- transcode_list: KEYS channel document, list key; ARGV 'hash' (broadcasts) or 'list'
-- (highlights). Answers whether the channel exists and its broadcasts or clips in one read.
if ARGV[1] == 'hash' then
  return {redis.call('EXISTS', KEYS[1]), redis.call('HGETALL', KEYS[2])}
end
return {redis.call('EXISTS', KEYS[1]), redis.call('LRANGE', KEYS[2], 0, -1)}
