"""bench/confirm helper: writes Redis protocol for redis-cli --pipe, and the wrk input.
   gen.py reserve SHA SALE FROM COUNT PREFIX YEAR NOW   -> holds via the reserve script
   gen.py confirm SHA SALE FROM COUNT PREFIX YEAR NOW   -> confirms of those holds (the peer)
   gen.py tokens SECRET SALE FROM COUNT PREFIX          -> "token rid" lines for wrk"""
import base64, hashlib, hmac, json, sys, time

USERS = 10000


def resp(args):
    out = [f"*{len(args)}\r\n"]
    for a in args:
        b = str(a)
        out.append(f"${len(b.encode())}\r\n{b}\r\n")
    return "".join(out)


def user(i):
    return f"buyer{i % USERS}"


def main():
    mode = sys.argv[1]
    w = sys.stdout.write
    if mode == "tokens":
        secret, sale, first, count, prefix = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
        b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
        head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        cache = {}
        for i in range(first, first + count):
            u = user(i)
            if u not in cache:
                body = b64(json.dumps({"sub": u, "role": "viewer", "exp": int(time.time()) + 86400}).encode())
                sig = b64(hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
                cache[u] = f"{head}.{body}.{sig}"
            w(f"{cache[u]} {sale}_{prefix}{i}\n")
        return
    sha, sale, first, count, prefix, year, now = sys.argv[2:9]
    first, count = int(first), int(count)
    k = lambda name: f"sl:{{sale:{sale}}}:{name}"
    for i in range(first, first + count):
        u, rid = user(i), f"{sale}_{prefix}{i}"
        spent = f"sl:{{buyer:{u}}}:spent:{year}"
        if mode == "reserve":
            w(resp(["EVALSHA", sha, 6, k("inv"), k("res"), k("exp"), k("user"),
                    k(f"idem:{u}:g{prefix}{i}"), spent, now, u, 1, rid, 50, 2600000, 500000, 86400]))
        else:
            w(resp(["EVALSHA", sha, 8, k("inv"), k("res"), k("exp"), k("user"), k("orders"), spent,
                    f"sl:{{buyer:{u}}}:orders", f"sl:{{buyer:{u}}}:orderdocs", now, u, rid,
                    "bench", f"O{rid}", 2600000]))


main()
