// bench/payments/openloop.mjs: open-loop load at a fixed rate, for latency. Request i is due at
// t0 + i/rate whatever happened to the ones before it, and its latency counts from that due time
// (so a slow reply delays nothing and hides nothing). Plain keep-alive HTTP/1.1 over node's net
// (node's http client costs several times more CPU per request, and the sender must not be the
// saturated process): requests are written from bytes made beforehand, one at a time per
// connection, on up to CONNS connections (64 opened before the start); a request due while every
// connection is busy waits for the first one free, its latency still counted from its due time.
//   node openloop.mjs notify HOST:PORT FILE RATE SERIAL   FILE: "ts<TAB>nonce<TAB>sig<TAB>body"
//   node openloop.mjs confirm HOST:PORT FILE RATE         FILE: "token rid" (the old confirm)
// Prints one JSON line: statuses, achieved rate, p50/p90/p99/p99.9/max in ms, the sender's own
// CPU, and how late it fell behind the schedule at worst.
import fs from 'node:fs';
import net from 'node:net';

const [mode, hostport, file, rateText, serial] = process.argv.slice(2);
const [host, portText] = hostport.split(':');
const port = Number(portText);
const rate = Number(rateText);
const maxConns = Number(process.env.CONNS || 256);

function request(path, headers, body) {
  const b = Buffer.from(body);
  let head = `POST ${path} HTTP/1.1\r\nHost: ${hostport}\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  head += `Content-Length: ${b.length}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head), b]);
}
const reqs = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0).map((l) => {
  if (mode === 'notify') {
    const [ts, nonce, sig, body] = l.split('\t');
    return request('/api/v1/payments/wechatpay/notify', {
      'Content-Type': 'application/json', 'Wechatpay-Timestamp': ts, 'Wechatpay-Nonce': nonce,
      'Wechatpay-Signature': sig, 'Wechatpay-Serial': serial,
      'Wechatpay-Signature-Type': 'WECHATPAY2-SHA256-RSA2048' }, body);
  }
  const [tok, rid] = l.split(' ');
  return request(`/api/v1/reservations/${rid}/confirm`,
    { Authorization: `Bearer ${tok}`, 'Content-Type': 'application/json' }, '{"payment_ref":"bench"}');
});
const n = reqs.length;
const lat = [];
const byDue = []; // per second of due time: latencies

const statuses = {};
let done = 0, sent = 0, worstLag = 0, firstError = null, t0 = 0;
const idle = [], waiting = [], conns = new Set();
const count = (k) => { statuses[k] = (statuses[k] || 0) + 1; };

function openConn() {
  const c = { sock: net.connect(port, host), buf: Buffer.alloc(0), due: null, ready: false };
  conns.add(c);
  c.sock.setNoDelay(true);
  c.sock.on('connect', () => { c.ready = true; free(c); });
  c.sock.on('data', (d) => { c.buf = c.buf.length ? Buffer.concat([c.buf, d]) : d; parse(c); });
  const lost = (e) => {
    if (!conns.delete(c)) return;
    const i = idle.indexOf(c);
    if (i >= 0) idle.splice(i, 1);
    if (e && !firstError) firstError = String(e);
    if (c.due !== null) { count('error'); c.due = null; finish(); }
  };
  c.sock.on('error', lost);
  c.sock.on('close', () => lost(null));
  return c;
}

// one whole response at the front of c.buf: status, headers, Content-Length body (or chunked)
function parse(c) {
  for (;;) {
    const end = c.buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = c.buf.subarray(0, end).toString('latin1');
    const status = Number(head.slice(9, 12));
    let total;
    const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    if (m) total = end + 4 + Number(m[1]);
    else if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
      const z = c.buf.indexOf('\r\n0\r\n\r\n', end);
      if (z < 0) return;
      total = z + 7;
    } else total = end + 4;
    if (c.buf.length < total) return;
    c.buf = c.buf.subarray(total);
    if (c.due === null) continue; // nothing asked: ignore
    const l = performance.now() - c.due;
    lat.push(l);
    const sec = Math.floor((c.due - t0) / 1000);
    (byDue[sec] ||= []).push(l);
    count(status);
    c.due = null;
    free(c);
    finish();
  }
}

function free(c) {
  const w = waiting.shift();
  if (w) return send(c, w.i, w.due);
  idle.push(c);
}

function send(c, i, due) {
  c.due = due;
  c.sock.write(reqs[i]);
}

function dispatch(i, due) {
  const c = idle.pop();
  if (c) return send(c, i, due);
  waiting.push({ i, due });
  if (conns.size < maxConns) openConn();
}

function tick() {
  const now = performance.now();
  while (sent < n && t0 + (sent * 1000) / rate <= now) {
    const due = t0 + (sent * 1000) / rate;
    worstLag = Math.max(worstLag, now - due);
    dispatch(sent++, due);
  }
  if (sent < n) setTimeout(tick, Math.max(0, Math.min(5, t0 + (sent * 1000) / rate - performance.now())));
}

function pct(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : NaN;
}

let cpu0, startedAt;
function finish() {
  if (++done < n) return;
  const elapsed = (performance.now() - t0) / 1000;
  const sorted = Float64Array.from(lat).sort();
  const cpu = process.cpuUsage(cpu0);
  const r3 = (x) => Math.round(x * 1000) / 1000;
  const r1 = (x) => Math.round(x * 10) / 10;
  console.log(JSON.stringify({
    mode, started_at_ms: startedAt, sent: n, statuses, target_rate: rate, achieved_rate: Math.round(n / elapsed),
    seconds: r3(elapsed), p50_ms: r3(pct(sorted, 50)), p90_ms: r3(pct(sorted, 90)), p99_ms: r3(pct(sorted, 99)),
    p999_ms: r3(pct(sorted, 99.9)), max_ms: r3(sorted[sorted.length - 1]), connections: conns.size,
    sender_cpu_pct: Math.round(((cpu.user + cpu.system) / 1e6 / elapsed) * 100),
    worst_send_lag_ms: r3(worstLag), first_error: firstError,
    // per second of the run (by due time): [second, requests, p50, p99, max] in ms
    timeline: byDue.map((a, i) => {
      const t = Float64Array.from(a || []).sort();
      return [i, t.length, r1(pct(t, 50)), r1(pct(t, 99)), r1(t[t.length - 1])];
    }),
  }));
  for (const c of conns) c.sock.destroy();
}

if (n === 0) {
  console.log(JSON.stringify({ mode, sent: 0 }));
} else {
  for (let i = 0; i < Math.min(64, maxConns); i++) openConn();
  // start once the first connections are up
  const start = () => {
    if (idle.length < Math.min(64, maxConns)) return setTimeout(start, 5);
    cpu0 = process.cpuUsage();
    t0 = performance.now();
    startedAt = Date.now();
    tick();
  };
  start();
}
