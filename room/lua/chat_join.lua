-- chat_join: KEYS: history, state, ban, deleted. ARGV: since ('' for a plain join), events of a plain
-- join, most events a recovery replays. Returns {'banned'} or {'ok', gap, newest id read,
-- {id, text, ...} oldest first without deleted messages, state hash as a flat array}.
-- A recovery has a gap when more events were missed than it replays, or when the stream has
-- trimmed events newer than `since` (XINFO's max-deleted-entry-id: deletions by moderators
-- are tombstones in `deleted`, never XDEL, so only trimming moves it).
if redis.call('EXISTS', KEYS[3]) == 1 then return {'banned'} end
local function id_lt(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if not am or not bm then return false end
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
local entries, gap = {}, 0
if ARGV[1] ~= '' then
  local max = tonumber(ARGV[3])
  entries = redis.call('XREVRANGE', KEYS[1], '+', '(' .. ARGV[1], 'COUNT', max)
  if #entries >= max then gap = 1 end
  if gap == 0 and redis.call('EXISTS', KEYS[1]) == 1 then
    local info = redis.call('XINFO', 'STREAM', KEYS[1])
    for i = 1, #info, 2 do
      if info[i] == 'max-deleted-entry-id' and id_lt(ARGV[1], info[i + 1]) then gap = 1 end
    end
  end
else
  entries = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', tonumber(ARGV[2]))
end
local newest = ''
if #entries > 0 then newest = entries[1][1] end
local out = {}
for i = #entries, 1, -1 do
  local id = entries[i][1]
  if redis.call('HEXISTS', KEYS[4], id) == 0 then
    out[#out + 1] = id
    out[#out + 1] = entries[i][2][2]
  end
end
return {'ok', gap, newest, out, redis.call('HGETALL', KEYS[2])}
