-- wrk script: POST reservations as 10k distinct buyers, each request with its own Idempotency-Key.
-- args: tokens file, sale id.
local tokens, sale, n, tid = {}, nil, 0, 0
local counter = 1
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
function init(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  sale = args[2]
  tid = tonumber(tid) or 1
end
function request()
  n = n + 1
  local i = ((n * 7919 + tid * 104729) % #tokens) + 1
  return wrk.format("POST", "/api/v1/sales/" .. sale .. "/reservations",
    { ["Authorization"] = "Bearer " .. tokens[i], ["Content-Type"] = "application/json",
      ["Idempotency-Key"] = "t" .. tid .. "-" .. n }, '{"qty":1}')
end
