"""bench/payments helper (HEAD's scripts): Redis protocol for redis-cli --pipe, and wrk input.
   gen.py reserve SHA SALE FROM COUNT PREFIX NOW  -> holds via HEAD's reserve script (5 keys)
   gen.py intents SECRET SALE FROM COUNT PREFIX   -> "token<TAB>rid<TAB>body" lines for wrk:
        POST /reservations/{rid}/payment, provider wechatpay, each buyer with its own valid
        resident identity number (GB 11643), so the annual quota is per buyer
   The old confirm round uses bench/confirm/gen.py of the old tree as it was."""
import base64, datetime, hashlib, hmac, json, sys, time

USERS = 10000
WEIGHT = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def resp(args):
    out = [f"*{len(args)}\r\n"]
    for a in args:
        b = str(a)
        out.append(f"${len(b.encode())}\r\n{b}\r\n")
    return "".join(out)


def user(i):
    return f"buyer{i % USERS}"


def id_number(k):
    """A distinct valid 18-character resident identity number for buyer k (k < 366000)."""
    birth = datetime.date(1970, 1, 1) + datetime.timedelta(days=k // 1000)
    first17 = f"110105{birth:%Y%m%d}{k % 1000:03d}"
    check = "10X98765432"[sum(int(d) * w for d, w in zip(first17, WEIGHT)) % 11]
    return first17 + check


def main():
    mode = sys.argv[1]
    w = sys.stdout.write
    if mode == "intents":
        secret, sale, first, count, prefix = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
        b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
        head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        tokens, bodies = {}, {}
        for i in range(first, first + count):
            u, k = user(i), i % USERS
            if u not in tokens:
                claims = b64(json.dumps({"sub": u, "role": "viewer", "exp": int(time.time()) + 86400}).encode())
                sig = b64(hmac.new(secret.encode(), f"{head}.{claims}".encode(), hashlib.sha256).digest())
                tokens[u] = f"{head}.{claims}.{sig}"
                phone = f"138{k:08d}"
                bodies[u] = json.dumps({
                    "provider": "wechatpay", "scene": "native",
                    "buyer": {"name": f"买家{k}", "id_type": "resident_id", "id_number": id_number(k), "phone": phone},
                    "consignee": {"name": f"买家{k}", "phone": phone,
                                  "address": f"上海市浦东新区世博大道{k}号", "district": "310115"},
                }, ensure_ascii=False, separators=(",", ":"))
            w(f"{tokens[u]}\t{sale}_{prefix}{i}\t{bodies[u]}\n")
        return
    sha, sale, first, count, prefix, now = sys.argv[2:8]
    first, count = int(first), int(count)
    k = lambda name: f"sl:{{sale:{sale}}}:{name}"
    for i in range(first, first + count):
        u, rid = user(i), f"{sale}_{prefix}{i}"
        # KEYS inv res exp userh idem; ARGV now user qty rid lazy_max quota_annual quota_order idem_ttl_s
        w(resp(["EVALSHA", sha, 5, k("inv"), k("res"), k("exp"), k("user"),
                k(f"idem:{u}:g{prefix}{i}"), now, u, 1, rid, 50, 2600000, 500000, 86400]))


main()
