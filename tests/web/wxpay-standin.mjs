// wxpay-standin: a local stand-in of the WeChat Pay API v3 provider, written from its published
// specification, for tests of the server's payments (tests/web/payments.test.mjs).
//
// What it holds the caller (the merchant: silklive) to, as WeChat Pay does:
// - every request carries `Authorization: WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",
//   signature="…",timestamp="…",serial_no="…"` (the five in any order), the signature being
//   base64 SHA256-with-RSA (PKCS#1 v1.5) by the merchant's private key over
//   "METHOD\nURL-path[?query]\ntimestamp\nnonce_str\nbody\n" (body empty for GET), the mchid and
//   serial the registered ones, the timestamp within five minutes; anything else is
//   401 {"code":"SIGN_ERROR","message":…}.
// - every answer, errors included, is signed by the platform's private key over
//   "timestamp\nnonce\nbody\n" in Wechatpay-Timestamp / -Nonce / -Signature / -Serial
//   (and Wechatpay-Signature-Type, Request-ID).
// - the basic rules that do not fail a request here (Accept / Content-Type application/json,
//   User-Agent, a fresh nonce per request) are recorded as `violations` for the test to assert.
//
// Endpoints: POST /v3/pay/transactions/native → {code_url}; POST /v3/pay/transactions/h5 →
// {h5_url}; GET /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid= → the transaction;
// POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close {mchid} → 204;
// POST /v3/refund/domestic/refunds → the refund; GET /v3/refund/domestic/refunds/{out_refund_no}.
//
// Notifications it sends (TRANSACTION.SUCCESS, REFUND.SUCCESS): JSON {id, create_time,
// event_type, resource_type:"encrypt-resource", summary, resource:{original_type, algorithm:
// "AEAD_AES_256_GCM", ciphertext (base64 of ciphertext‖16-byte tag), associated_data, nonce
// (12 characters)}}, the resource encrypted with the APIv3 key (32 ASCII bytes) and the whole
// signed like an answer. The merchant answers 200/204 to acknowledge, 4xx/5xx with
// {"code":"FAIL","message"} to refuse.
//
// Control API (startStandin(opts) → s; in-process, for the test that imports it):
// - s.requests: every request the server made ({method, url, path, headers, body, json, status,
//   answer, authError}); s.refundRequests(otn): its accepted refunds; s.violations; s.deliveries.
// - s.pay(otn, {notify = true, force}) → the notification's answer {status, text, json} (or null):
//   the transaction becomes SUCCESS (refused after time_expire unless force) and TRANSACTION.SUCCESS
//   goes to its notify_url; s.notifyPaid(otn): the same notification again, freshly signed.
// - s.sendBad(kind, otn): forged | tampered | stale (10 min old) | wrong_key | unsigned;
//   s.replay(delivery): the same bytes and headers again; s.craft({resource, nonce, timestamp,
//   signKey, apiv3Key, eventType, …}) + s.deliver(url, n): anything else.
// - refunds answer PROCESSING, then REFUND.SUCCESS after cfg.refundDelayMs (cfg.refundAuto =
//   false: only on s.completeRefund(out_refund_no, 'SUCCESS' | 'ABNORMAL' | 'CLOSED'));
//   cfg.refundStatus = 'SUCCESS' answers SUCCESS at once.
// - cfg.forgeAnswers (2xx answers signed by a stranger), cfg.queryOverride, cfg.failNext.
//
// Only node's crypto and http.

import { createServer, request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import crypto from 'node:crypto';

export const AUTH_SCHEME = 'WECHATPAY2-SHA256-RSA2048';
const WINDOW_S = 300;

// ---- the protocol's primitives (exported for the tests and the stand-in's self-test) ----

export function rsaKeyPair() {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { publicKey, privateKey };
}

export const nowS = () => Math.floor(Date.now() / 1000);

// 32 characters of [0-9A-Za-z], as WeChat Pay's and its SDKs' nonces are.
export function nonceStr(n = 32) {
  const abc = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
  const raw = crypto.randomBytes(n);
  let s = '';
  for (const b of raw) s += abc[b % abc.length];
  return s;
}

export function sign(privateKeyPem, message) {
  return crypto.sign('sha256', Buffer.from(message, 'utf8'), privateKeyPem).toString('base64');
}

export function verify(publicKeyPem, message, signatureB64) {
  try {
    return crypto.verify('sha256', Buffer.from(message, 'utf8'), publicKeyPem, Buffer.from(signatureB64, 'base64'));
  } catch {
    return false;
  }
}

// The merchant's request signature (what the server's cm_wxpay_authorization makes).
export function requestMessage(method, pathAndQuery, timestamp, nonce, body) {
  return `${method}\n${pathAndQuery}\n${timestamp}\n${nonce}\n${body ?? ''}\n`;
}

export function authorization({ privateKey, mchid, serialNo, method, pathAndQuery, body = '', timestamp = nowS(), nonce = nonceStr() }) {
  const signature = sign(privateKey, requestMessage(method, pathAndQuery, timestamp, nonce, body));
  return `${AUTH_SCHEME} mchid="${mchid}",nonce_str="${nonce}",signature="${signature}",timestamp="${timestamp}",serial_no="${serialNo}"`;
}

// Parses an Authorization header: {scheme, params} or null.
export function parseAuthorization(header) {
  if (typeof header !== 'string') return null;
  const sp = header.indexOf(' ');
  if (sp < 0) return null;
  const scheme = header.slice(0, sp);
  const params = {};
  for (const part of header.slice(sp + 1).split(',')) {
    const m = part.trim().match(/^([a-z_]+)="([^"]*)"$/);
    if (!m || params[m[1]] !== undefined) return null;
    params[m[1]] = m[2];
  }
  return { scheme, params };
}

// The answer / notification signature: "timestamp\nnonce\nbody\n".
export function answerMessage(timestamp, nonce, body) {
  return `${timestamp}\n${nonce}\n${body}\n`;
}

export function signedHeaders({ privateKey, serial, body, timestamp = nowS(), nonce = nonceStr() }) {
  return {
    'Wechatpay-Timestamp': String(timestamp),
    'Wechatpay-Nonce': nonce,
    'Wechatpay-Signature': sign(privateKey, answerMessage(timestamp, nonce, body)),
    'Wechatpay-Serial': serial,
    'Wechatpay-Signature-Type': AUTH_SCHEME,
  };
}

// AEAD_AES_256_GCM: key the 32 ASCII bytes of the APIv3 key, iv the nonce's 12 bytes, the
// associated data's bytes; base64(ciphertext ‖ tag).
export function encryptResource(apiv3Key, plaintext, associatedData, nonce = nonceStr(12)) {
  const key = Buffer.from(apiv3Key, 'utf8');
  if (key.length !== 32) throw new Error('the APIv3 key must be 32 bytes');
  const cipher = crypto.createCipheriv('aes-256-gcm', key, Buffer.from(nonce, 'utf8'));
  cipher.setAAD(Buffer.from(associatedData ?? '', 'utf8'));
  const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
  return { ciphertext: ct.toString('base64'), nonce, associated_data: associatedData };
}

export function decryptResource(apiv3Key, { ciphertext, nonce, associated_data: aad }) {
  const buf = Buffer.from(ciphertext, 'base64');
  const decipher = crypto.createDecipheriv('aes-256-gcm', Buffer.from(apiv3Key, 'utf8'), Buffer.from(nonce, 'utf8'));
  decipher.setAAD(Buffer.from(aad ?? '', 'utf8'));
  decipher.setAuthTag(buf.subarray(buf.length - 16));
  return Buffer.concat([decipher.update(buf.subarray(0, buf.length - 16)), decipher.final()]).toString('utf8');
}

// RFC 3339 in China time, as WeChat Pay writes its times: 2026-12-03T20:00:00+08:00.
export function chinaTime(ms = Date.now()) {
  const d = new Date(ms + 8 * 3600 * 1000);
  return d.toISOString().replace(/\.\d{3}Z$/, '+08:00');
}

// yyyy-MM-DDTHH:mm:ss[.SSS](Z|±HH:MM) → ms, or NaN.
export function parseRfc3339(s) {
  if (typeof s !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?(Z|[+-]\d{2}:\d{2})$/.test(s)) return NaN;
  return Date.parse(s);
}

// POSTs a body with headers to a URL; {status, headers, text, json}.
export function post(url, headers, body) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), ...headers },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try {
          json = text ? JSON.parse(text) : null;
        } catch {
          /* not JSON */
        }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.setTimeout(15000, () => req.destroy(new Error(`no answer from ${url} in 15 s`)));
    req.end(body);
  });
}

// ---- the stand-in ----

const PAY_PATHS = { native: '/v3/pay/transactions/native', h5: '/v3/pay/transactions/h5' };
const STATE_DESC = { NOTPAY: '订单未支付', SUCCESS: '支付成功', CLOSED: '订单已关闭', REFUND: '转入退款' };

function digits(n) {
  let s = '';
  for (const b of crypto.randomBytes(n)) s += String(b % 10);
  return s;
}

// opts: {mchid, appid, merchantSerial, merchantPublicKey, platformPrivateKey, platformSerial,
//        apiv3Key, refundStatus ('PROCESSING' | 'SUCCESS'), refundDelayMs, log}
export async function startStandin(opts) {
  const cfg = {
    refundStatus: 'PROCESSING', // what POST /refunds answers; PROCESSING then SUCCESS after refundDelayMs
    refundDelayMs: 300,
    refundAuto: true, // false: the refund stays PROCESSING until completeRefund()
    forgeAnswers: false, // true: 2xx answers signed by a stranger's key (the server must not believe them)
    queryOverride: null, // {out_trade_no, ...fields}: the query of that out_trade_no answers these fields
    failNext: null, // {path?, status, code, message}: the next request fails so
    ...opts,
  };
  cfg.forgeKey ??= rsaKeyPair().privateKey; // a stranger's key: forged answers and notifications
  const requests = []; // every request the server made: {at, method, url, path, headers, body, json, status, answer, authError}
  const violations = []; // basic-rule breaches that do not fail the request
  const deliveries = []; // every notification sent: {kind, url, status, text, headers, body}
  const transactions = new Map(); // out_trade_no → {order (the request), tx (the transaction), notify_url, scene, created_ms}
  const refunds = new Map(); // out_refund_no → {refund, notify_url, request}
  const seenNonces = new Set();
  const timers = new Set();

  function answer(res, status, obj) {
    const body = obj === undefined ? '' : JSON.stringify(obj);
    const key = cfg.forgeAnswers && status < 300 ? cfg.forgeKey : cfg.platformPrivateKey;
    const h = signedHeaders({ privateKey: key, serial: cfg.platformSerial, body });
    res.writeHead(status, {
      ...h,
      'Request-ID': `08${digits(8)}-${crypto.randomUUID()}`,
      Server: 'nginx',
      ...(body ? { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body) } : {}),
    });
    res.end(body);
    return body;
  }
  const fail = (res, status, code, message, extra = {}) => answer(res, status, { code, message, ...extra });

  // The merchant's signature, as WeChat Pay checks it; an error text, or null when it holds.
  function checkAuthorization(req, body) {
    const parsed = parseAuthorization(req.headers.authorization);
    if (!parsed) return 'Authorization header missing or malformed';
    if (parsed.scheme !== AUTH_SCHEME) return `authorization type ${parsed.scheme} is not ${AUTH_SCHEME}`;
    const p = parsed.params;
    for (const k of ['mchid', 'nonce_str', 'signature', 'timestamp', 'serial_no']) if (!p[k]) return `Authorization lacks ${k}`;
    if (p.mchid !== cfg.mchid) return `mchid ${p.mchid} is not the merchant's`;
    if (p.serial_no.toUpperCase() !== String(cfg.merchantSerial).toUpperCase()) return `serial_no ${p.serial_no} is not the merchant certificate's`;
    if (!/^\d{1,12}$/.test(p.timestamp) || Math.abs(nowS() - Number(p.timestamp)) > WINDOW_S) return `timestamp ${p.timestamp} is not within five minutes of now`;
    if (!verify(cfg.merchantPublicKey, requestMessage(req.method, req.url, p.timestamp, p.nonce_str, body), p.signature)) {
      return 'the signature does not verify over METHOD\\nURL\\ntimestamp\\nnonce\\nbody\\n with the merchant certificate';
    }
    if (seenNonces.has(p.nonce_str)) violations.push(`${req.method} ${req.url}: nonce_str ${p.nonce_str} used twice`);
    seenNonces.add(p.nonce_str);
    return null;
  }

  function basicRules(req, body) {
    const where = `${req.method} ${req.url}`;
    if (!/application\/json/.test(req.headers.accept ?? '')) violations.push(`${where}: Accept is not application/json (${req.headers.accept})`);
    if (!req.headers['user-agent']) violations.push(`${where}: no User-Agent`);
    if (req.method === 'POST' && !/^application\/json/.test(req.headers['content-type'] ?? '')) violations.push(`${where}: Content-Type is not application/json (${req.headers['content-type']})`);
    if (req.method === 'GET' && body !== '') violations.push(`${where}: a GET with a body`);
  }

  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const rec = { at: Date.now(), method: req.method, url: req.url, path: req.url.split('?')[0], headers: req.headers, body, json: null };
      requests.push(rec);
      try {
        rec.json = body ? JSON.parse(body) : null;
      } catch {
        /* kept as text */
      }
      const authError = checkAuthorization(req, body);
      if (authError) {
        rec.authError = authError;
        rec.status = 401;
        rec.answer = fail(res, 401, 'SIGN_ERROR', `签名错误: ${authError}`);
        cfg.log?.(`wxpay stand-in: 401 ${req.method} ${req.url}: ${authError}`);
        return;
      }
      basicRules(req, body);
      try {
        route(req, res, rec, body);
      } catch (e) {
        rec.status = 500;
        rec.answer = fail(res, 500, 'SYSTEM_ERROR', `stand-in: ${e.message}`);
      }
    });
  });

  function reply(rec, res, status, obj) {
    rec.status = status;
    rec.answer = answer(res, status, obj);
  }
  function replyFail(rec, res, status, code, message, extra) {
    rec.status = status;
    rec.answer = fail(res, status, code, message, extra);
    cfg.log?.(`wxpay stand-in: ${status} ${rec.method} ${rec.url}: ${code} ${message} (request ${rec.body})`);
  }

  function route(req, res, rec, body) {
    const u = new URL(req.url, 'http://standin');
    const path = u.pathname;
    let m;
    // failNext: {path?, status, code, message}: the next request (to path) fails as WeChat Pay's
    // own errors do (SYSTEM_ERROR 500, FREQUENCY_LIMITED 429, ...)
    const f = cfg.failNext;
    if (f && (!f.path || f.path === path)) {
      cfg.failNext = null;
      rec.injected = true;
      return replyFail(rec, res, f.status ?? 500, f.code ?? 'SYSTEM_ERROR', f.message ?? '系统错误');
    }
    if (req.method === 'POST' && (path === PAY_PATHS.native || path === PAY_PATHS.h5)) {
      return placeOrder(path === PAY_PATHS.native ? 'NATIVE' : 'MWEB', rec, res);
    }
    if (req.method === 'GET' && (m = path.match(/^\/v3\/pay\/transactions\/out-trade-no\/([^/]+)$/))) {
      const otn = decodeURIComponent(m[1]);
      const mchid = u.searchParams.get('mchid');
      if (!mchid) return replyFail(rec, res, 400, 'PARAM_ERROR', '输入源"/query/mchid"映射到值字段"直连商户号"必填性规则校验失败,此字段为必填项', { detail: { location: 'query', value: null } });
      if (mchid !== cfg.mchid) return replyFail(rec, res, 400, 'MCH_NOT_EXISTS', '商户号不存在');
      const t = transactions.get(otn);
      if (!t) return replyFail(rec, res, 404, 'ORDER_NOT_EXIST', '订单不存在');
      // queryOverride: a test's answer for one out_trade_no (with forgeAnswers: a forged SUCCESS)
      const o = cfg.queryOverride?.out_trade_no === otn ? cfg.queryOverride : null;
      return reply(rec, res, 200, o ? { ...t.tx, ...o } : t.tx);
    }
    if (req.method === 'POST' && (m = path.match(/^\/v3\/pay\/transactions\/out-trade-no\/([^/]+)\/close$/))) {
      const otn = decodeURIComponent(m[1]);
      if (rec.json?.mchid !== cfg.mchid) return replyFail(rec, res, 400, 'PARAM_ERROR', 'mchid 与商户号不一致');
      const t = transactions.get(otn);
      if (!t) return replyFail(rec, res, 404, 'ORDER_NOT_EXIST', '订单不存在');
      if (t.tx.trade_state === 'SUCCESS' || t.tx.trade_state === 'REFUND') return replyFail(rec, res, 400, 'ORDERPAID', '订单已支付');
      setState(t, 'CLOSED');
      return reply(rec, res, 204);
    }
    if (req.method === 'POST' && path === '/v3/refund/domestic/refunds') return createRefund(rec, res);
    if (req.method === 'GET' && (m = path.match(/^\/v3\/refund\/domestic\/refunds\/([^/]+)$/))) {
      const r = refunds.get(decodeURIComponent(m[1]));
      if (!r) return replyFail(rec, res, 404, 'RESOURCE_NOT_EXISTS', '退款单不存在');
      return reply(rec, res, 200, r.refund);
    }
    return replyFail(rec, res, 404, 'NOT_FOUND', `no such API: ${req.method} ${path}`);
  }

  function setState(t, state) {
    t.tx.trade_state = state;
    t.tx.trade_state_desc = STATE_DESC[state] ?? state;
  }

  // A field error as WeChat Pay words it.
  const paramError = (rec, res, field, why) => replyFail(rec, res, 400, 'PARAM_ERROR', `${field}: ${why}`, { detail: { field, location: 'body' } });

  function placeOrder(tradeType, rec, res) {
    const o = rec.json;
    if (!o || typeof o !== 'object') return replyFail(rec, res, 400, 'PARAM_ERROR', '请求体不是 JSON 对象');
    if (o.appid !== cfg.appid) return replyFail(rec, res, 400, 'APPID_MCHID_NOT_MATCH', 'appid 和 mch_id 不匹配');
    if (o.mchid !== cfg.mchid) return replyFail(rec, res, 400, 'MCH_NOT_EXISTS', '商户号不存在');
    if (typeof o.description !== 'string' || o.description.length === 0 || Buffer.byteLength(o.description) > 127) return paramError(rec, res, 'description', 'string(127) required');
    if (typeof o.out_trade_no !== 'string' || !/^[0-9A-Za-z_\-|*]{6,32}$/.test(o.out_trade_no)) return paramError(rec, res, 'out_trade_no', `string(32): 6 to 32 characters of digits, letters, _-|* (this one has ${String(o.out_trade_no).length})`);
    if (typeof o.notify_url !== 'string' || !/^https?:\/\/[^?#]+$/.test(o.notify_url)) return paramError(rec, res, 'notify_url', 'an absolute URL without a query');
    const amt = o.amount;
    if (!amt || !Number.isInteger(amt.total) || amt.total < 1) return paramError(rec, res, 'amount.total', 'an integer ≥ 1 (fen)');
    if (amt.currency !== undefined && amt.currency !== 'CNY') return paramError(rec, res, 'amount.currency', 'only CNY');
    let expireMs = null;
    if (o.time_expire !== undefined) {
      expireMs = parseRfc3339(o.time_expire);
      if (Number.isNaN(expireMs)) return paramError(rec, res, 'time_expire', 'yyyy-MM-DDTHH:mm:ss+TIMEZONE (RFC 3339)');
      if (expireMs <= Date.now()) return replyFail(rec, res, 400, 'INVALID_REQUEST', 'time_expire 已过期');
    }
    if (tradeType === 'MWEB') {
      const si = o.scene_info;
      if (!si || typeof si.payer_client_ip !== 'string' || !si.payer_client_ip) return paramError(rec, res, 'scene_info.payer_client_ip', 'required');
      if (!si.h5_info || typeof si.h5_info.type !== 'string' || !['iOS', 'Android', 'Wap'].includes(si.h5_info.type)) return paramError(rec, res, 'scene_info.h5_info.type', 'iOS | Android | Wap');
    }
    const prior = transactions.get(o.out_trade_no);
    if (prior) {
      if (prior.tx.trade_state === 'SUCCESS' || prior.tx.trade_state === 'REFUND') return replyFail(rec, res, 400, 'ORDERPAID', '该订单已支付');
      if (prior.tx.trade_state === 'CLOSED') return replyFail(rec, res, 400, 'ORDER_CLOSED', '该订单已关闭');
      const same = prior.order.amount.total === amt.total && prior.order.description === o.description && prior.tradeType === tradeType;
      if (!same) return replyFail(rec, res, 400, 'INVALID_REQUEST', '201 商户订单号重复');
      return reply(rec, res, 200, prior.client);
    }
    const prepay = `wx${digits(14)}${nonceStr(18).toLowerCase()}`;
    const client = tradeType === 'NATIVE'
      ? { code_url: `weixin://wxpay/bizpayurl?pr=${nonceStr(7)}` }
      : { h5_url: `https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=${prepay}&package=${digits(10)}` };
    const t = {
      order: o,
      tradeType,
      client,
      notify_url: o.notify_url,
      expireMs,
      created_ms: Date.now(),
      refunded: 0,
      tx: {
        appid: o.appid,
        mchid: o.mchid,
        out_trade_no: o.out_trade_no,
        trade_state: 'NOTPAY',
        trade_state_desc: STATE_DESC.NOTPAY,
        amount: { total: amt.total, currency: 'CNY', payer_currency: 'CNY' },
        ...(o.attach !== undefined ? { attach: o.attach } : {}),
      },
    };
    transactions.set(o.out_trade_no, t);
    return reply(rec, res, 200, client);
  }

  function createRefund(rec, res) {
    const b = rec.json;
    if (!b || typeof b !== 'object') return replyFail(rec, res, 400, 'PARAM_ERROR', '请求体不是 JSON 对象');
    if (typeof b.out_refund_no !== 'string' || !/^[0-9A-Za-z_\-|*@]{1,64}$/.test(b.out_refund_no)) return paramError(rec, res, 'out_refund_no', 'string(64) of digits, letters, _-|*@');
    if (b.reason !== undefined && (typeof b.reason !== 'string' || Buffer.byteLength(b.reason) > 80)) return paramError(rec, res, 'reason', 'string(80)');
    if (b.notify_url !== undefined && (typeof b.notify_url !== 'string' || !/^https?:\/\/[^?#]+$/.test(b.notify_url))) return paramError(rec, res, 'notify_url', 'an absolute URL without a query');
    const a = b.amount;
    if (!a || !Number.isInteger(a.refund) || a.refund < 1 || !Number.isInteger(a.total) || a.total < 1) return paramError(rec, res, 'amount', '{refund, total} integers ≥ 1 (fen)');
    if (a.currency !== 'CNY') return paramError(rec, res, 'amount.currency', 'CNY required');
    let t = null;
    if (typeof b.transaction_id === 'string') t = [...transactions.values()].find((x) => x.tx.transaction_id === b.transaction_id);
    else if (typeof b.out_trade_no === 'string') t = transactions.get(b.out_trade_no);
    else return paramError(rec, res, 'out_trade_no', 'transaction_id or out_trade_no required');
    if (!t) return replyFail(rec, res, 404, 'RESOURCE_NOT_EXISTS', '订单不存在');
    const prior = refunds.get(b.out_refund_no);
    if (prior) {
      if (prior.request.amount.refund !== a.refund || prior.tx !== t) return replyFail(rec, res, 400, 'INVALID_REQUEST', '退款单号重复，且退款金额或订单与之前的请求不一致');
      return reply(rec, res, 200, prior.refund);
    }
    if (t.tx.trade_state !== 'SUCCESS' && t.tx.trade_state !== 'REFUND') return replyFail(rec, res, 400, 'INVALID_REQUEST', '订单未支付，不能退款');
    if (a.total !== t.tx.amount.total) return replyFail(rec, res, 400, 'INVALID_REQUEST', '订单金额与原订单金额不一致');
    if (a.refund > t.tx.amount.total - t.refunded) return replyFail(rec, res, 403, 'NOT_ENOUGH', '退款金额超过可退金额');
    t.refunded += a.refund;
    const refund = {
      refund_id: `50${digits(30)}`,
      out_refund_no: b.out_refund_no,
      transaction_id: t.tx.transaction_id,
      out_trade_no: t.tx.out_trade_no,
      channel: 'ORIGINAL',
      user_received_account: '支付用户零钱',
      create_time: chinaTime(),
      status: 'PROCESSING',
      funds_account: b.funds_account ?? 'AVAILABLE',
      amount: {
        total: t.tx.amount.total, refund: a.refund, payer_total: t.tx.amount.payer_total, payer_refund: a.refund,
        settlement_total: t.tx.amount.total, settlement_refund: a.refund, discount_refund: 0, currency: 'CNY', refund_fee: 0,
      },
      promotion_detail: [],
    };
    const r = { refund, request: b, tx: t, notify_url: b.notify_url ?? t.notify_url };
    refunds.set(b.out_refund_no, r);
    setState(t, 'REFUND');
    if (cfg.refundStatus === 'SUCCESS') {
      succeedRefund(r);
      reply(rec, res, 200, refund);
      later(() => sendRefundNotification(r), cfg.refundDelayMs);
      return;
    }
    reply(rec, res, 200, refund);
    if (cfg.refundAuto) later(() => completeRefund(b.out_refund_no), cfg.refundDelayMs);
  }

  function succeedRefund(r) {
    r.refund.status = 'SUCCESS';
    r.refund.success_time = chinaTime();
  }

  function later(fn, ms) {
    const h = setTimeout(() => {
      timers.delete(h);
      fn().catch((e) => cfg.log?.(`wxpay stand-in: ${e.message}`));
    }, ms);
    timers.add(h);
  }

  // ---- notifications ----

  // A notification's body and headers. o: {eventType, originalType, summary, resource (object),
  // apiv3Key, signKey, serial, timestamp, nonce}.
  function craft({ eventType = 'TRANSACTION.SUCCESS', originalType = 'transaction', summary = '支付成功', resource,
    apiv3Key = cfg.apiv3Key, signKey = cfg.platformPrivateKey, serial = cfg.platformSerial, timestamp = nowS(), nonce = nonceStr() }) {
    const enc = encryptResource(apiv3Key, JSON.stringify(resource), originalType);
    const body = JSON.stringify({
      id: crypto.randomUUID(),
      create_time: chinaTime(timestamp * 1000),
      resource_type: 'encrypt-resource',
      event_type: eventType,
      summary,
      resource: { original_type: originalType, algorithm: 'AEAD_AES_256_GCM', ciphertext: enc.ciphertext, associated_data: enc.associated_data, nonce: enc.nonce },
    });
    const headers = { ...signedHeaders({ privateKey: signKey, serial, body, timestamp, nonce }), 'Request-ID': crypto.randomUUID(), 'User-Agent': 'Mozilla/4.0' };
    return { headers, body };
  }

  async function deliver(kind, url, n) {
    const r = await post(url, n.headers, n.body);
    deliveries.push({ kind, url, status: r.status, text: r.text, json: r.json, headers: n.headers, body: n.body });
    cfg.log?.(`wxpay stand-in: ${kind} → ${url}: ${r.status} ${r.text}`);
    return r;
  }

  function transactionOf(otn) {
    const t = transactions.get(otn);
    if (!t) throw new Error(`the stand-in has no transaction ${otn}`);
    return t;
  }

  // The payer pays: the transaction becomes SUCCESS. o: {notify (default true), force (pay even
  // after time_expire or when closed), amount (payer_total, default the order's total)}.
  // Returns the notification's answer ({status, text, json}) or null when not notified.
  async function pay(otn, { notify = true, force = false } = {}) {
    const t = transactionOf(otn);
    if (!force) {
      if (t.tx.trade_state !== 'NOTPAY') throw new Error(`${otn} is ${t.tx.trade_state}, not payable`);
      if (t.expireMs !== null && Date.now() > t.expireMs) throw new Error(`${otn} expired at ${t.order.time_expire}; WeChat Pay takes no money after time_expire`);
    }
    if (t.tx.trade_state !== 'SUCCESS') {
      setState(t, 'SUCCESS');
      Object.assign(t.tx, {
        transaction_id: `4200${digits(24)}`,
        trade_type: t.tradeType,
        bank_type: 'OTHERS',
        success_time: chinaTime(),
        payer: { openid: `oUpF8u${nonceStr(22)}` },
        promotion_detail: [],
      });
      t.tx.amount = { total: t.tx.amount.total, payer_total: t.tx.amount.total, currency: 'CNY', payer_currency: 'CNY' };
    }
    return notify ? notifyPaid(otn) : null;
  }

  // (Re)sends the TRANSACTION.SUCCESS of a paid transaction, freshly signed as every delivery is.
  // o: craft()'s overrides, plus url.
  function notifyPaid(otn, o = {}) {
    const t = transactionOf(otn);
    return deliver('TRANSACTION.SUCCESS', o.url ?? t.notify_url, craft({ resource: t.tx, ...o }));
  }

  // A TRANSACTION.SUCCESS for any transaction document (e.g. an out_trade_no nobody ordered).
  function successResource(otn, total, extra = {}) {
    const t = transactions.get(otn);
    return {
      appid: cfg.appid, mchid: cfg.mchid, out_trade_no: otn, transaction_id: `4200${digits(24)}`, trade_type: 'NATIVE',
      trade_state: 'SUCCESS', trade_state_desc: STATE_DESC.SUCCESS, bank_type: 'OTHERS', attach: '', success_time: chinaTime(),
      payer: { openid: `oUpF8u${nonceStr(22)}` }, amount: { total: total ?? t?.tx.amount.total ?? 1, payer_total: total ?? t?.tx.amount.total ?? 1, currency: 'CNY', payer_currency: 'CNY' },
      ...extra,
    };
  }

  // Notifications that must not be believed, for an out_trade_no (its transaction stays as it
  // is here: no money moved). kind: forged (signed by another key), tampered (a byte of the
  // signed body changed afterwards), stale (timestamp 10 min old, correctly signed), wrong_key
  // (signed correctly, the resource encrypted with another APIv3 key), unsigned (no signature
  // headers). Returns the server's answer.
  function sendBad(kind, otn, { url, forgeKey = cfg.forgeKey, total } = {}) {
    const t = transactions.get(otn);
    const target = url ?? t?.notify_url;
    if (!target) throw new Error('no notify_url known for ' + otn);
    const resource = successResource(otn, total);
    let n;
    switch (kind) {
      case 'forged':
        n = craft({ resource, signKey: forgeKey });
        break;
      case 'tampered': {
        n = craft({ resource });
        const doc = JSON.parse(n.body);
        doc.summary = '支付成功 ';
        n.body = JSON.stringify(doc);
        break;
      }
      case 'stale':
        n = craft({ resource, timestamp: nowS() - 600 });
        break;
      case 'wrong_key':
        n = craft({ resource, apiv3Key: nonceStr(32) });
        break;
      case 'unsigned': {
        n = craft({ resource });
        for (const h of ['Wechatpay-Signature', 'Wechatpay-Timestamp', 'Wechatpay-Nonce']) delete n.headers[h];
        break;
      }
      default:
        throw new Error('unknown kind ' + kind);
    }
    return deliver(`bad:${kind}`, target, n);
  }

  // Sends exactly the bytes and headers of an earlier delivery again (a replay).
  function replay(delivery) {
    return deliver('replay', delivery.url, { headers: delivery.headers, body: delivery.body });
  }

  // The refund's outcome: SUCCESS (default), ABNORMAL (the money could not reach the payer) or
  // CLOSED; sends REFUND.<status> to the refund's notify_url.
  async function completeRefund(outRefundNo, status = 'SUCCESS') {
    const r = refunds.get(outRefundNo);
    if (!r) throw new Error(`the stand-in has no refund ${outRefundNo}`);
    if (status === 'SUCCESS') {
      if (r.refund.status !== 'SUCCESS') succeedRefund(r);
    } else {
      if (r.refund.status === 'PROCESSING' && status === 'CLOSED') r.tx.refunded -= r.refund.amount.refund;
      r.refund.status = status;
    }
    return sendRefundNotification(r);
  }

  const REFUND_SUMMARY = { SUCCESS: '退款成功', ABNORMAL: '退款异常', CLOSED: '退款关闭' };
  function sendRefundNotification(r, o = {}) {
    const f = r.refund;
    const resource = {
      mchid: cfg.mchid, out_trade_no: f.out_trade_no, transaction_id: f.transaction_id, out_refund_no: f.out_refund_no, refund_id: f.refund_id,
      refund_status: f.status, ...(f.success_time ? { success_time: f.success_time } : {}), user_received_account: f.user_received_account,
      amount: { total: f.amount.total, refund: f.amount.refund, payer_total: f.amount.payer_total, payer_refund: f.amount.payer_refund },
    };
    return deliver(`REFUND.${f.status}`, o.url ?? r.notify_url, craft({ eventType: `REFUND.${f.status}`, originalType: 'refund', summary: REFUND_SUMMARY[f.status] ?? f.status, resource, ...o }));
  }

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();

  return {
    base: `http://127.0.0.1:${port}`,
    port,
    cfg,
    requests,
    violations,
    deliveries,
    transactions,
    refunds,
    pay,
    notifyPaid,
    successResource,
    craft,
    deliver: (url, n) => deliver('custom', url, n),
    sendBad,
    replay,
    completeRefund,
    sendRefundNotification: (outRefundNo, o) => sendRefundNotification(refunds.get(outRefundNo), o),
    refundRequests: (otn) => requests.filter((r) => r.method === 'POST' && r.path === '/v3/refund/domestic/refunds' && r.status === 200 && (otn === undefined || r.json?.out_trade_no === otn)),
    close: async () => {
      for (const h of timers) clearTimeout(h);
      server.closeAllConnections?.();
      await new Promise((r) => server.close(r));
    },
  };
}
