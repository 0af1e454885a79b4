-- wrk script: POST /api/v1/payments/wechatpay/notify, the provider's notifications signed before
-- the run. args: a file of "timestamp<TAB>nonce<TAB>signature<TAB>body" lines, the platform serial,
-- and a log ("#status<TAB>body" for anything but 204). Each line is sent once; the thread stops
-- once all are answered (idle connections meanwhile GET /api/v1/payments/providers, not counted).
local reqs, n, got, ok, out = {}, 0, 0, 0, nil
local idle = wrk.format("GET", "/api/v1/payments/providers")
function init(args)
  for line in io.lines(args[1]) do
    local ts, nonce, sig, body = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t(.*)$")
    reqs[#reqs + 1] = wrk.format("POST", "/api/v1/payments/wechatpay/notify", {
      ["Content-Type"] = "application/json", ["Wechatpay-Timestamp"] = ts,
      ["Wechatpay-Nonce"] = nonce, ["Wechatpay-Signature"] = sig, ["Wechatpay-Serial"] = args[2],
      ["Wechatpay-Signature-Type"] = "WECHATPAY2-SHA256-RSA2048" }, body)
  end
  out = io.open(args[3], "w")
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
  if status == 204 then ok = ok + 1 else out:write("#", status, "\t", body:sub(1, 300), "\n") end
  if got >= #reqs then
    out:write("answered\t", got, "\t", now_ns(), "\t204\t", ok, "\n")
    wrk.thread:stop()
  end
end
