-- ingest_lease_release: KEYS lease; ARGV our value. Deletes the publisher lease only while it is
-- still ours, so a late release never frees another publisher's. Returns 1 or 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
