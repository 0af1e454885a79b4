-- wrk script: POST /reservations/{rid}/confirm, each request a different held reservation of
-- its own buyer. args: a file of "token rid" lines (one thread: requests take them in order).
local lines, n = {}, 0
function init(args)
  for line in io.lines(args[1]) do lines[#lines + 1] = line end
end
function request()
  n = n + 1
  local tok, rid = lines[((n - 1) % #lines) + 1]:match("(%S+) (%S+)")
  return wrk.format("POST", "/api/v1/reservations/" .. rid .. "/confirm",
    { ["Authorization"] = "Bearer " .. tok, ["Content-Type"] = "application/json" },
    '{"payment_ref":"bench"}')
end
