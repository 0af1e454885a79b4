-- chat_moderate: KEYS: history, mute, ban, deleted. ARGV: action, pub channel, user, duration_ms (0: no
-- expiry), message id, event text (delete), maxlen. Returns {'ok'} | {'ok', event id} |
-- {'not_found'}. A ban also tells every node to close the user's connections (an internal
-- "_kick" message: never part of the history, never forwarded to clients).
--! include room_emit
local a, dur = ARGV[1], tonumber(ARGV[4])
local function set(key)
  if dur > 0 then redis.call('SET', key, '1', 'PX', dur) else redis.call('SET', key, '1') end
end
if a == 'mute' then set(KEYS[2])
elseif a == 'unmute' then redis.call('DEL', KEYS[2])
elseif a == 'ban' then
  set(KEYS[3])
  redis.call('PUBLISH', ARGV[2], cjson.encode({type = '_kick', user = ARGV[3]}))
elseif a == 'unban' then redis.call('DEL', KEYS[3])
elseif a == 'delete' then
  local e = redis.call('XRANGE', KEYS[1], ARGV[5], ARGV[5])
  if #e == 0 or cjson.decode(e[1][2][2]).type ~= 'chat' then return {'not_found'} end
  redis.call('HSET', KEYS[4], ARGV[5], '1')
  local id = room_emit(KEYS[1], ARGV[2], ARGV[6], ARGV[7])
  return {'ok', id}
end
return {'ok'}
