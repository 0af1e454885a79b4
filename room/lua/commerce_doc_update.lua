-- commerce_doc_update: KEYS docs; ARGV id now allowed_from new_state patch. Changes one JSON
-- document of a hash (an order, a payment) if it is in one of the allowed states (a comma list;
-- empty for any): new_state (empty keeps it) and the patch's members replace the document's; a
-- member that is an object on both sides is merged one level down (a refund's state changes,
-- its reason and number stay).
-- Replies {'ok', doc} | {'not_found'} | {'conflict', doc}.
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {'not_found'} end
local doc = cjson.decode(raw)
if ARGV[3] ~= '' then
  local allowed = false
  for st in string.gmatch(ARGV[3], '[^,]+') do
    if st == doc.state then allowed = true end
  end
  if not allowed then return {'conflict', raw} end
end
if ARGV[5] ~= '' then
  for k, v in pairs(cjson.decode(ARGV[5])) do
    if type(v) == 'table' and type(doc[k]) == 'table' then
      for kk, vv in pairs(v) do doc[k][kk] = vv end
    else
      doc[k] = v
    end
  end
end
if ARGV[4] ~= '' then doc.state = ARGV[4] end
doc.updated_at_ms = tonumber(ARGV[2])
local out = cjson.encode(doc)
redis.call('HSET', KEYS[1], ARGV[1], out)
return {'ok', out}
