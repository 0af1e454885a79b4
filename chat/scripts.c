/* scripts: chat's Redis scripts. Each check-and-act is one script so that every node sees the
 * same answer: a muted, banned or over-rate sender is refused in the same step that would
 * have appended the message. Sources are prefixed with core's room_emit where they append. */
#include "scripts.h"

/* KEYS: history, mute, ban, rate. ARGV: pub channel, event text, maxlen, now_ms, bucket
 * capacity, milliseconds per token. Returns {'ok', id} | {'banned'} | {'muted', pttl} |
 * {'rate_limited', retry_after_ms}. */
const char chat_lua_send[] =
    "if redis.call('EXISTS', KEYS[3]) == 1 then return {'banned'} end\n"
    "local mute = redis.call('PTTL', KEYS[2])\n"
    "if mute ~= -2 then return {'muted', tostring(mute)} end\n"
    "local now = tonumber(ARGV[4])\n"
    "local cap = tonumber(ARGV[5])\n"
    "local per = tonumber(ARGV[6])\n"
    "local b = redis.call('HMGET', KEYS[4], 't', 'ts')\n"
    "local tokens = tonumber(b[1]) or cap\n"
    "local ts = tonumber(b[2]) or now\n"
    "if now > ts then tokens = math.min(cap, tokens + (now - ts) / per); ts = now end\n"
    "if tokens < 1 then return {'rate_limited', tostring(math.ceil((1 - tokens) * per))} end\n"
    "redis.call('HSET', KEYS[4], 't', tostring(tokens - 1), 'ts', tostring(ts))\n"
    "redis.call('PEXPIRE', KEYS[4], math.ceil(cap * per) + 1000)\n"
    "local id = room_emit(KEYS[1], ARGV[1], ARGV[2], ARGV[3])\n"
    "return {'ok', id}\n";

/* KEYS: history, state, ban, deleted. ARGV: since ('' for a plain join), events of a plain
 * join, most events a recovery replays. Returns {'banned'} or {'ok', gap, newest id read,
 * {id, text, ...} oldest first without deleted messages, state hash as a flat array}.
 * A recovery has a gap when more events were missed than it replays, or when the stream has
 * trimmed events newer than `since` (XINFO's max-deleted-entry-id: deletions by moderators
 * are tombstones in `deleted`, never XDEL, so only trimming moves it). */
const char chat_lua_join[] =
    "if redis.call('EXISTS', KEYS[3]) == 1 then return {'banned'} end\n"
    "local function id_lt(a, b)\n"
    "  local am, as = string.match(a, '^(%d+)-(%d+)$')\n"
    "  local bm, bs = string.match(b, '^(%d+)-(%d+)$')\n"
    "  if not am or not bm then return false end\n"
    "  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)\n"
    "  return am < bm or (am == bm and as < bs)\n"
    "end\n"
    "local entries, gap = {}, 0\n"
    "if ARGV[1] ~= '' then\n"
    "  local max = tonumber(ARGV[3])\n"
    "  entries = redis.call('XREVRANGE', KEYS[1], '+', '(' .. ARGV[1], 'COUNT', max)\n"
    "  if #entries >= max then gap = 1 end\n"
    "  if gap == 0 and redis.call('EXISTS', KEYS[1]) == 1 then\n"
    "    local info = redis.call('XINFO', 'STREAM', KEYS[1])\n"
    "    for i = 1, #info, 2 do\n"
    "      if info[i] == 'max-deleted-entry-id' and id_lt(ARGV[1], info[i + 1]) then gap = 1 end\n"
    "    end\n"
    "  end\n"
    "else\n"
    "  entries = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', tonumber(ARGV[2]))\n"
    "end\n"
    "local newest = ''\n"
    "if #entries > 0 then newest = entries[1][1] end\n"
    "local out = {}\n"
    "for i = #entries, 1, -1 do\n"
    "  local id = entries[i][1]\n"
    "  if redis.call('HEXISTS', KEYS[4], id) == 0 then\n"
    "    out[#out + 1] = id\n"
    "    out[#out + 1] = entries[i][2][2]\n"
    "  end\n"
    "end\n"
    "return {'ok', gap, newest, out, redis.call('HGETALL', KEYS[2])}\n";

/* KEYS: presence hash. ARGV: node id, its viewers, now_ms, ms after which a silent node's
 * count no longer counts. Returns the viewers of every live node. */
const char chat_lua_presence[] =
    "local now, stale = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "if ARGV[2] == '0' then redis.call('HDEL', KEYS[1], ARGV[1])\n"
    "else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[3]) end\n"
    "local all = redis.call('HGETALL', KEYS[1])\n"
    "local sum = 0\n"
    "for i = 1, #all, 2 do\n"
    "  local n, ts = string.match(all[i + 1], '^(%d+):(%d+)$')\n"
    "  if n and tonumber(ts) + stale >= now then sum = sum + tonumber(n)\n"
    "  else redis.call('HDEL', KEYS[1], all[i]) end\n"
    "end\n"
    "if #all > 0 then redis.call('PEXPIRE', KEYS[1], stale * 4) end\n"
    "return sum\n";

/* KEYS: history, mute, ban, deleted. ARGV: action, pub channel, user, duration_ms (0: no
 * expiry), message id, event text (delete), maxlen. Returns {'ok'} | {'ok', event id} |
 * {'not_found'}. A ban also tells every node to close the user's connections (an internal
 * "_kick" message: never part of the history, never forwarded to clients). */
const char chat_lua_moderate[] =
    "local a, dur = ARGV[1], tonumber(ARGV[4])\n"
    "local function set(key)\n"
    "  if dur > 0 then redis.call('SET', key, '1', 'PX', dur) else redis.call('SET', key, '1') "
    "end\n"
    "end\n"
    "if a == 'mute' then set(KEYS[2])\n"
    "elseif a == 'unmute' then redis.call('DEL', KEYS[2])\n"
    "elseif a == 'ban' then\n"
    "  set(KEYS[3])\n"
    "  redis.call('PUBLISH', ARGV[2], cjson.encode({type = '_kick', user = ARGV[3]}))\n"
    "elseif a == 'unban' then redis.call('DEL', KEYS[3])\n"
    "elseif a == 'delete' then\n"
    "  local e = redis.call('XRANGE', KEYS[1], ARGV[5], ARGV[5])\n"
    "  if #e == 0 or cjson.decode(e[1][2][2]).type ~= 'chat' then return {'not_found'} end\n"
    "  redis.call('HSET', KEYS[4], ARGV[5], '1')\n"
    "  local id = room_emit(KEYS[1], ARGV[2], ARGV[6], ARGV[7])\n"
    "  return {'ok', id}\n"
    "end\n"
    "return {'ok'}\n";
