-- room_emit: the one definition of how an event enters a room. Appends the event text (without
-- its id) to the capped history stream, then publishes it with the stream id spliced in as
-- "id", so every node sees the id a later `since` recovery will use. Returns id, msg.
local function room_emit(history, channel, text, maxlen)
  local id = redis.call('XADD', history, 'MAXLEN', '~', maxlen, '*', 'e', text)
  local msg = '{"id":"' .. id .. '",' .. string.sub(text, 2)
  redis.call('PUBLISH', channel, msg)
  return id, msg
end
