-- commerce_cas: KEYS doc del_key set_key; ARGV old new set_value. Replace a document only if nobody changed
-- it since it was read, and move a secondary key with it (stream-key rotation). 'ok' | 'changed'.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'changed' end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[3], ARGV[3])
return 'ok'
