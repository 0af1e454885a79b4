// bench/payments/standin.mjs: a stand-in for WeChat Pay API v3 (node's crypto only), enough for
// the paid path: the merchant's and the platform's RSA keys and the APIv3 key, the prepay
// endpoint answering signed, and the platform's signed, sealed TRANSACTION.SUCCESS notifications.
// Everything it signs for a timed window is signed before it (so its own CPU stays out of the
// measurement): prepay answers come from a pool signed beforehand (each a different code_url;
// the out_trade_no the server will use is its business, not the stand-in's).
//
//   node standin.mjs keys DIR PORT          keys + DIR/wechatpay.ini ([wechatpay], api_base PORT)
//   node standin.mjs answers DIR COUNT OUT  COUNT pre-signed prepay answers (a pool)
//   node standin.mjs notes DIR IN OUT       pre-signed notifications, IN: "out_trade_no<TAB>total";
//                                           OUT: "timestamp<TAB>nonce<TAB>signature<TAB>body"
//   node standin.mjs serve DIR PORT [ANSWERS...]
//        POST /v3/pay/transactions/native   checks the merchant's Authorization, answers
//                                           {"code_url"} signed by the platform
//        GET  /_standin/prepaid             "out_trade_no<TAB>total" of every prepay seen
//        GET  /_standin/stats               counters (JSON)
//        POST /_standin/load                body: a path of more pre-signed answers for the pool
// The signing commands spread the work over worker threads (STANDIN_WORKERS, default 2).
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

const MCHID = '1900000109';
const APPID = 'wxd678efh567hg6787';
const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

function randomText(n, alphabet = ALNUM) {
  const b = crypto.randomBytes(n);
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[b[i] % alphabet.length];
  return s;
}

function loadState(dir) {
  const meta = JSON.parse(fs.readFileSync(path.join(dir, 'standin.json'), 'utf8'));
  meta.platformKey = crypto.createPrivateKey(fs.readFileSync(path.join(dir, 'platform_key.pem')));
  meta.merchantPub = crypto.createPublicKey(fs.readFileSync(path.join(dir, 'merchant_pub.pem')));
  return meta;
}

// RFC 3339 in China's time, as WeChat Pay writes times
function chinaTime(ms) {
  return new Date(ms + 8 * 3600e3).toISOString().replace(/\.\d+Z$/, '+08:00');
}

// the platform's signature of an answer or a notification: "ts\nnonce\nbody\n"
function platformSign(st, body) {
  const ts = String(Math.floor(Date.now() / 1000));
  const nonce = randomText(32, '0123456789ABCDEF');
  const sig = crypto.sign('sha256', Buffer.from(`${ts}\n${nonce}\n${body}\n`), st.platformKey)
    .toString('base64');
  return { ts, nonce, sig };
}

function prepayAnswer(st) {
  const body = JSON.stringify({ code_url: `weixin://wxpay/bizpayurl?pr=${randomText(10)}` });
  return { body, ...platformSign(st, body) };
}

function notification(st, tradeNo, total) {
  const now = Date.now();
  const transaction = {
    mchid: st.mchid, appid: st.appid, out_trade_no: tradeNo,
    transaction_id: '4200' + randomText(24, '0123456789'),
    trade_type: 'NATIVE', trade_state: 'SUCCESS', trade_state_desc: '支付成功',
    bank_type: 'OTHERS', attach: '', success_time: chinaTime(now),
    payer: { openid: 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o' },
    amount: { total, payer_total: total, currency: 'CNY', payer_currency: 'CNY' },
  };
  const nonce = randomText(12);
  const cipher = crypto.createCipheriv('aes-256-gcm', Buffer.from(st.apiv3_key, 'ascii'), Buffer.from(nonce, 'ascii'));
  cipher.setAAD(Buffer.from('transaction'));
  const ct = Buffer.concat([cipher.update(JSON.stringify(transaction), 'utf8'), cipher.final(), cipher.getAuthTag()]);
  const body = JSON.stringify({
    id: crypto.randomUUID(), create_time: chinaTime(now), resource_type: 'encrypt-resource',
    event_type: 'TRANSACTION.SUCCESS', summary: '支付成功',
    resource: { original_type: 'transaction', algorithm: 'AEAD_AES_256_GCM', ciphertext: ct.toString('base64'),
      associated_data: 'transaction', nonce },
  });
  return { body, ...platformSign(st, body) };
}

// ---- worker threads: sign a share of the items ----
if (!isMainThread) {
  const { kind, dir, items } = workerData;
  const st = loadState(dir);
  const out = items.map((it) => {
    if (kind === 'answers') {
      const a = prepayAnswer(st);
      return `${a.ts}\t${a.nonce}\t${a.sig}\t${a.body}`;
    }
    const [tradeNo, total] = it.split('\t');
    const n = notification(st, tradeNo, Number(total));
    return `${n.ts}\t${n.nonce}\t${n.sig}\t${n.body}`;
  });
  parentPort.postMessage(out);
} else {
  await main(process.argv.slice(2));
}

async function signAll(kind, dir, items) {
  const w = Math.max(1, Number(process.env.STANDIN_WORKERS || 2));
  const per = Math.ceil(items.length / w);
  const parts = [];
  for (let i = 0; i < w && i * per < items.length; i++) {
    const share = items.slice(i * per, (i + 1) * per);
    parts.push(new Promise((resolve, reject) => {
      const wk = new Worker(new URL(import.meta.url), { workerData: { kind, dir, items: share } });
      wk.once('message', resolve);
      wk.once('error', reject);
    }));
  }
  return (await Promise.all(parts)).flat();
}

function lines(file) {
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0);
}

async function main(argv) {
  const [cmd, dir] = argv;
  if (cmd === 'keys') {
    const port = argv[2];
    fs.mkdirSync(dir, { recursive: true });
    const gen = () => crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const m = gen(), p = gen();
    const pem = (k, type) => k.export({ type, format: 'pem' });
    fs.writeFileSync(path.join(dir, 'merchant_key.pem'), pem(m.privateKey, 'pkcs8'), { mode: 0o600 });
    fs.writeFileSync(path.join(dir, 'merchant_pub.pem'), pem(m.publicKey, 'spki'));
    fs.writeFileSync(path.join(dir, 'platform_key.pem'), pem(p.privateKey, 'pkcs8'), { mode: 0o600 });
    fs.writeFileSync(path.join(dir, 'platform_pub.pem'), pem(p.publicKey, 'spki'));
    const meta = {
      mchid: MCHID, appid: APPID, apiv3_key: randomText(32),
      serial_no: crypto.randomBytes(20).toString('hex').toUpperCase(),
      platform_serial: crypto.randomBytes(20).toString('hex').toUpperCase(),
    };
    fs.writeFileSync(path.join(dir, 'standin.json'), JSON.stringify(meta, null, 1), { mode: 0o600 });
    fs.writeFileSync(path.join(dir, 'wechatpay.ini'), [
      '[wechatpay]', `mchid = ${meta.mchid}`, `appid = ${meta.appid}`, `serial_no = ${meta.serial_no}`,
      `private_key_file = ${path.resolve(dir, 'merchant_key.pem')}`,
      `platform_public_key_file = ${path.resolve(dir, 'platform_pub.pem')}`,
      `platform_serial = ${meta.platform_serial}`, `apiv3_key = ${meta.apiv3_key}`,
      `api_base = http://127.0.0.1:${port}`, '',
    ].join('\n'), { mode: 0o600 });
    console.log(meta.platform_serial);
    return;
  }
  if (cmd === 'answers' || cmd === 'notes') {
    const items = cmd === 'answers' ? Array.from({ length: Number(argv[2]) }, (_, i) => i) : lines(argv[2]);
    const out = await signAll(cmd, dir, items);
    fs.writeFileSync(argv[3], out.join('\n') + (out.length ? '\n' : ''));
    return;
  }
  if (cmd === 'serve') return serve(dir, Number(argv[2]), argv.slice(3));
  throw new Error(`standin: unknown command ${cmd}`);
}

function serve(dir, port, answerFiles) {
  const st = loadState(dir);
  const answers = []; // the pool of pre-signed answers, used in order
  let next = 0;
  const load = (file) => {
    for (const l of lines(file)) {
      const [ts, nonce, sig, body] = l.split('\t');
      answers.push({ ts, nonce, sig, body });
    }
  };
  answerFiles.forEach(load);
  const prepaid = new Map(); // out_trade_no -> total asked for
  const stats = { prepay: 0, presigned: 0, signed_late: 0, bad_auth: 0, repeats: 0, anomalies: 0,
    first_anomaly: null, inflight_max: 0, other: 0 };
  let inflight = 0;
  const anomaly = (why) => {
    stats.anomalies++;
    if (!stats.first_anomaly) stats.first_anomaly = why;
  };
  const reply = (res, status, body, signed) => {
    const s = signed || platformSign(st, body);
    res.writeHead(status, {
      'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body),
      'Request-ID': randomText(16), 'Wechatpay-Timestamp': s.ts, 'Wechatpay-Nonce': s.nonce,
      'Wechatpay-Signature': s.sig, 'Wechatpay-Serial': st.platform_serial,
      'Wechatpay-Signature-Type': 'WECHATPAY2-SHA256-RSA2048',
    });
    res.end(body);
  };
  const server = http.createServer({ keepAliveTimeout: 120e3 }, (req, res) => {
    const chunks = [];
    inflight++;
    stats.inflight_max = Math.max(stats.inflight_max, inflight);
    res.on('finish', () => inflight--);
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      if (req.url === '/_standin/stats') return res.end(JSON.stringify(stats));
      if (req.url === '/_standin/prepaid') {
        let t = '';
        for (const [no, total] of prepaid) t += `${no}\t${total}\n`;
        return res.end(t);
      }
      if (req.url === '/_standin/load' && req.method === 'POST') {
        load(raw.trim());
        return res.end(`${answers.length - next}\n`);
      }
      if (req.method !== 'POST' || req.url !== '/v3/pay/transactions/native') {
        stats.other++;
        return reply(res, 404, JSON.stringify({ code: 'RESOURCE_NOT_EXISTS', message: `stand-in: no ${req.method} ${req.url}` }));
      }
      // WECHATPAY2-SHA256-RSA2048 mchid="",nonce_str="",signature="",timestamp="",serial_no=""
      const auth = req.headers.authorization || '';
      const f = Object.fromEntries([...auth.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
      const msg = `POST\n${req.url}\n${f.timestamp}\n${f.nonce_str}\n${raw}\n`;
      const fresh = Math.abs(Date.now() / 1000 - Number(f.timestamp)) <= 300;
      if (!auth.startsWith('WECHATPAY2-SHA256-RSA2048 ') || f.mchid !== st.mchid ||
          f.serial_no !== st.serial_no || !fresh || !f.signature ||
          !crypto.verify('sha256', Buffer.from(msg), st.merchantPub, Buffer.from(f.signature, 'base64'))) {
        stats.bad_auth++;
        return reply(res, 401, JSON.stringify({ code: 'SIGN_ERROR', message: 'signature does not verify' }));
      }
      let body;
      try { body = JSON.parse(raw); } catch { body = {}; }
      const no = body.out_trade_no;
      const total = body.amount && body.amount.total;
      // out_trade_no: 6 to 32 of [0-9A-Za-z_-*|] per WeChat Pay's API v3
      if (body.mchid !== st.mchid || body.appid !== st.appid || typeof no !== 'string' ||
          !/^[0-9A-Za-z_\-*|]{6,32}$/.test(no) ||
          !Number.isInteger(total) || total <= 0 || body.amount.currency !== 'CNY' ||
          !body.notify_url || !body.time_expire || !body.description) {
        anomaly(`prepay body: ${raw.slice(0, 300)}`);
        return reply(res, 400, JSON.stringify({ code: 'PARAM_ERROR', message: 'stand-in: bad prepay body' }));
      }
      if (prepaid.has(no)) stats.repeats++;
      prepaid.set(no, total);
      stats.prepay++;
      while (next < answers.length && Date.now() / 1000 - Number(answers[next].ts) > 280) next++;
      if (next < answers.length) {
        const a = answers[next++];
        stats.presigned++;
        return reply(res, 200, a.body, a);
      }
      stats.signed_late++; // the pool ran out: signed now, on the stand-in's CPU
      const late = prepayAnswer(st);
      return reply(res, 200, late.body, late);
    });
  });
  server.listen(port, '127.0.0.1', () => console.log(`standin: listening on ${port}, ${answers.length} answers`));
}
