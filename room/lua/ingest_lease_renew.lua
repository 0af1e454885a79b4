-- ingest_lease_renew: KEYS lease; ARGV our value, ms. Extends the publisher lease only while it is
-- still ours. Returns 1, or 0 when another publisher holds it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
