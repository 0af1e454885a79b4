-- wrk script: POST /api/v1/reservations/{rid}/payment {"provider":"wechatpay",...}, each request a
-- different held reservation of its own buyer. args: a file of "token<TAB>rid<TAB>body" lines, and
-- a log to write: "rid<TAB>amount_cny_fen" for every 201, "#status<TAB>body" for anything else.
-- One thread; it stops once every line is answered (or at -d). Once the lines are all sent, an
-- idle connection asks GET /api/v1/payments/providers (told apart by its body, not logged).
local reqs, n, got, out = {}, 0, 0, nil
local idle = wrk.format("GET", "/api/v1/payments/providers")
function init(args)
  for line in io.lines(args[1]) do
    local tok, rid, body = line:match("^([^\t]+)\t([^\t]+)\t(.*)$")
    reqs[#reqs + 1] = wrk.format("POST", "/api/v1/reservations/" .. rid .. "/payment",
      { ["Authorization"] = "Bearer " .. tok, ["Content-Type"] = "application/json" }, body)
  end
  out = io.open(args[2], "w")
  out:setvbuf("line")
end
-- wrk calls request() once before the run to check the request it returns, and never sends
-- that one: that call gets the idle request, so every line is sent.
local checked = false
-- the wall clock in ns (wrk's Lua has none finer than seconds): read twice, at the first request
-- and at the last answer, so the window is the script's own, not wrk's -d
local function now_ns()
  local p = io.popen("date +%s%N")
  local t = p:read("*l")
  p:close()
  return t
end
function request()
  if not checked then
    checked = true
    return idle
  end
  n = n + 1
  if n == 1 then out:write("start\t", now_ns(), "\n") end
  if n <= #reqs then return reqs[n] end
  return idle
end
function response(status, headers, body)
  body = body or ""
  if body:sub(1, 13) == '{"providers":' then return end
  got = got + 1
  local rid, amount = body:match('"reservation_id":"([^"]+)"'), body:match('"amount_cny_fen":(%d+)')
  if status == 201 and rid and amount then
    out:write(rid, "\t", amount, "\n")
  else
    out:write("#", status, "\t", body:sub(1, 300), "\n")
  end
  if got >= #reqs then
    out:write("answered\t", got, "\t", now_ns(), "\n")
    wrk.thread:stop()
  end
end
