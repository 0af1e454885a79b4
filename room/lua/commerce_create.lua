-- commerce_create: KEYS doc parent index index2 map; ARGV doc member score map_value. A catalog document
-- (pavilion, channel, product) is created once and indexed in the same step. Empty key names
-- ('') are skipped. Replies 'ok', 'exists' or 'no_parent'.
if KEYS[2] ~= '' and redis.call('EXISTS', KEYS[2]) == 0 then return 'no_parent' end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 'exists' end
redis.call('ZADD', KEYS[3], tonumber(ARGV[3]), ARGV[2])
if KEYS[4] ~= '' then redis.call('ZADD', KEYS[4], tonumber(ARGV[3]), ARGV[2]) end
if KEYS[5] ~= '' then redis.call('SET', KEYS[5], ARGV[4]) end
return 'ok'
