-- room_emit: KEYS: history, state. ARGV: channel, text, maxlen, state field ('' for none), state value
-- ('' deletes the field). The snapshot is what a joining viewer needs besides history: the
-- pinned product and the channel's sales, each as of its latest event.
--! include room_emit
local id, msg = room_emit(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
if ARGV[4] ~= '' then
  if ARGV[5] == '' then redis.call('HDEL', KEYS[2], ARGV[4])
  else redis.call('HSET', KEYS[2], ARGV[4], msg) end
end
return id
