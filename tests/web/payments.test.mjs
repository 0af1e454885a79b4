// payments.test: real orders end to end — a real silklive and Redis (harness.mjs) against a local
// stand-in of WeChat Pay API v3 (wxpay-standin.mjs), written from the provider's published
// specification with keys this test makes. docs/design/payments.md is the contract: payment
// intents with the server's amounts and the import tax, confirm only once the payment is
// verified, notifications believed only when signed, fresh, unreplayed and opened with the
// APIv3 key, refunds when money arrives for a hold that is gone, the dev provider, consuls'
// refunds, per-person quotas under a race, and an acknowledged notification that survives kill -9.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import crypto from 'node:crypto';
import { apiAt, idCheckChar, startCluster, waitFor } from './harness.mjs';
import * as wx from './wxpay-standin.mjs';

const MCHID = '1900000001';
const APPID = 'wxd930ea5d5a258f4f';
const MERCHANT_SERIAL = '5157F09EFDC096DE15EBE81A47057A7232F1B8E1';
const PLATFORM_SERIAL = '7132D72A03E93CDDF8C03BBD1F37EEDF204F2F06';
const QUOTA_ANNUAL_FEN = 10000;
const NOTIFY_GRACE_S = 15; // [payments] notify_grace_s (default 60)
const MIN_HOLD_S = 45; // [payments] min_hold_s: a payment's hold lasts at least this long (default 120)
const PAV = 'CL';
const CHANNEL = 'cl-pay';
const CONSIGNEE = { name: '张三', phone: '13800138000', address: '上海市浦东新区世纪大道100号', district: '310115' };

let cluster, node, standin, keyDir, config, tokens;
let base; // the main node's URL

// ---- identity numbers (GB 11643: ISO 7064 MOD 11-2 check character) ----
const checkChar = idCheckChar;
let idSeq = 100;
const usedIds = ['11010519491231002X']; // every number sent: none may appear in a log
// A valid number, a new person each call.
function newIdNumber(birth = '19900307') {
  const first17 = `110105${birth}${String(++idSeq).padStart(3, '0')}`;
  usedIds.push(first17 + checkChar(first17));
  return usedIds.at(-1);
}
const masked = (id) => id.slice(0, 3) + '*'.repeat(11) + id.slice(14);

// ---- the import tax as api.md states it (independent of the server's integer form) ----
function importTax(goods, vatBp = 1300, ctBp = 0) {
  const v = vatBp / 10000;
  const c = ctBp / 10000;
  const ct = (goods * c) / (1 - c);
  const vat = (goods + ct) * v;
  return Math.floor(0.7 * (ct + vat) + 0.5 + 1e-9);
}

// ---- HTTP ----
const api = (...a) => apiAt(base, ...a);
const show = (r) => `${r.status} ${r.text}${r.why ?? ''}`;
const ACK = [200, 204];

async function ok(r, status = [200, 201]) {
  r = await r;
  assert.ok([].concat(status).includes(r.status), show(r));
  return r.json;
}

let skuSeq = 0;
// A product with the given import figures and an active sale of it.
async function newSale({ price = 1990, vat, ct, freight, quantity = 10, perUser = 2, holdTtl = 300 } = {}) {
  const sku = `cl-pay-${++skuSeq}-${crypto.randomBytes(3).toString('hex')}`;
  const product = { sku, title: { en: `Wine ${skuSeq}`, zh: `葡萄酒 ${skuSeq}` }, price: { amount_minor: 12990, currency: 'CLP' }, price_cny_fen: price, stock_location: 'bonded_sh' };
  if (vat !== undefined) product.vat_rate_bp = vat;
  if (ct !== undefined) product.consumption_tax_rate_bp = ct;
  if (freight !== undefined) product.freight_cny_fen = freight;
  await ok(api('POST', `/api/v1/pavilions/${PAV}/products`, product, tokens.consul), 201);
  const sale = await ok(api('POST', '/api/v1/sales', { channel: CHANNEL, sku, quantity, price_cny_fen: price, per_user_limit: perUser, hold_ttl_s: holdTtl }, tokens.consul), 201);
  await waitFor('the sale active', async () => (await api('GET', `/api/v1/sales/${sale.id}`)).json?.state === 'active');
  return { id: sale.id, sku, price };
}
const saleState = async (id, b = base) => (await ok(apiAt(b, 'GET', `/api/v1/sales/${id}`), 200));

async function reserve(saleId, tok, b = base) {
  const r = await ok(apiAt(b, 'POST', `/api/v1/sales/${saleId}/reservations`, { qty: 1 }, tok, { 'idempotency-key': crypto.randomUUID() }), 201);
  return r.reservation_id;
}

const buyer = (idNumber) => ({ name: '张三', id_type: 'resident_id', id_number: idNumber, phone: '13800138000' });
async function intent(rid, tok, { provider = 'wechatpay', idNumber, scene, b = base } = {}) {
  const body = { provider, buyer: buyer(idNumber), consignee: CONSIGNEE };
  if (scene) body.scene = scene;
  const r = await apiAt(b, 'POST', `/api/v1/reservations/${rid}/payment`, body, tok);
  // when it failed, what the provider was asked and answered
  const asked = standin.requests.filter((x) => isOtnOf(rid, x.json?.out_trade_no) && x.status >= 400 && !x.injected);
  if (r.status >= 400 && asked.length) r.why = ` — WeChat Pay was asked ${asked.map((x) => `${x.method} ${x.path} ${x.body} and answered ${x.status} ${x.answer}`).join('; ')}`;
  return r;
}
const confirm = (rid, paymentId, tok, b = base) => apiAt(b, 'POST', `/api/v1/reservations/${rid}/confirm`, { payment_ref: paymentId }, tok);
// Confirms as a client polls: every 500 ms while 402, until the server has asked the provider
// (it does once the notification is overdue, a few seconds after the intent). Every answer.
async function pollConfirm(rid, paymentId, tok, timeoutMs = 20000) {
  const answers = [];
  const end = Date.now() + timeoutMs;
  for (;;) {
    const asked = queries(rid).length > 0;
    const c = await confirm(rid, paymentId, tok);
    answers.push(c);
    if (c.status !== 402 || asked || Date.now() > end) return answers;
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function ordersOf(saleId) {
  const j = await ok(api('GET', `/api/v1/orders?sale=${saleId}`, null, tokens.consul), 200);
  return Array.isArray(j) ? j : j.orders;
}

// A pending WeChat Pay payment: {sale, rid, payment}.
async function pendingPayment(tok = tokens.alice, saleOpts = {}, intentOpts = {}) {
  const sale = await newSale(saleOpts);
  const rid = await reserve(sale.id, tok);
  const payment = await ok(intent(rid, tok, { idNumber: newIdNumber(), ...intentOpts }), 201);
  return { sale, rid, payment };
}

// WeChat Pay's out_trade_no of a reservation: the rid (payments.md), or, as the server makes it
// since a rid has 33 characters and out_trade_no at most 32, the rid without its leading S.
const isOtnOf = (rid, o) => typeof o === 'string' && (o === rid || (rid.length > 32 && o === rid.slice(1)));
function otn(rid) {
  for (const k of [rid, rid.slice(1)]) if (standin.transactions.has(k) && isOtnOf(rid, k)) return k;
  return rid.length > 32 ? rid.slice(1) : rid;
}
const nativeOrders = (rid) => standin.requests.filter((r) => r.method === 'POST' && r.path === '/v3/pay/transactions/native' && isOtnOf(rid, r.json?.out_trade_no));
const queries = (rid) => standin.requests.filter((r) => r.method === 'GET' && isOtnOf(rid, decodeURIComponent(r.path.replace('/v3/pay/transactions/out-trade-no/', ''))));

function configText(apiBase) {
  return `[transcode]
ladder =
[payments]
dev = true
notify_grace_s = ${NOTIFY_GRACE_S}
min_hold_s = ${MIN_HOLD_S}
[wechatpay]
mchid = ${MCHID}
appid = ${APPID}
serial_no = ${MERCHANT_SERIAL}
private_key_file = ${join(keyDir, 'apiclient_key.pem')}
platform_public_key_file = ${join(keyDir, 'wechatpay_public_key.pem')}
platform_serial = ${PLATFORM_SERIAL}
apiv3_key = ${standin.cfg.apiv3Key}
api_base = ${apiBase}
[commerce]
identity_key = ${crypto.randomBytes(32).toString('hex')}
quota_annual_fen = ${QUOTA_ANNUAL_FEN}
`;
}

// Payments whose holds are let expire while the other tests run (see the last tests): money for
// one arrives within the notify grace, for the other after it.
let expiring, graced;

before(async () => {
  const merchant = wx.rsaKeyPair();
  const platform = wx.rsaKeyPair();
  keyDir = mkdtempSync(join(tmpdir(), 'silklive-wxpay-'));
  writeFileSync(join(keyDir, 'apiclient_key.pem'), merchant.privateKey, { mode: 0o600 });
  writeFileSync(join(keyDir, 'wechatpay_public_key.pem'), platform.publicKey);
  standin = await wx.startStandin({
    mchid: MCHID, appid: APPID, merchantSerial: MERCHANT_SERIAL, merchantPublicKey: merchant.publicKey,
    platformPrivateKey: platform.privateKey, platformPublicKey: platform.publicKey, platformSerial: PLATFORM_SERIAL,
    apiv3Key: wx.nonceStr(32), log: process.env.WXPAY_LOG ? console.log : undefined,
  });
  config = configText(standin.base);
  cluster = await startCluster();
  node = await cluster.node({ config });
  base = node.base;
  tokens = {
    admin: cluster.token('admin', 'ops'),
    consul: cluster.token('consul', 'consul-cl', ['--pavilion', PAV]),
    alice: cluster.token('viewer', 'alice'),
    bob: cluster.token('viewer', 'bob'),
    carol: cluster.token('viewer', 'carol'),
    dave: cluster.token('viewer', 'dave'),
    mallory: cluster.token('viewer', 'mallory'),
  };
  await ok(api('POST', '/api/v1/pavilions', { code: PAV, name: { en: 'Chile', zh: '智利' }, currency: 'CLP', languages: ['es'], ebc_code: 'CL00000001', ebc_name: '智利葡萄酒进出口有限公司' }, tokens.admin), 201);
  await ok(api('POST', `/api/v1/pavilions/${PAV}/channels`, { id: CHANNEL, title: { en: 'Wine night' } }, tokens.consul), 201);
  // Its hold (5 s) is extended by the intent to at least now + min_hold_s; a late test waits for it.
  // (a failure here fails that test only)
  const expiringPayment = async () => {
    const sale = await newSale({ holdTtl: 5 });
    const rid = await reserve(sale.id, tokens.alice);
    const payment = await ok(intent(rid, tokens.alice, { idNumber: newIdNumber() }), 201);
    return { sale, rid, payment };
  };
  expiring = expiringPayment().catch((error) => ({ error }));
  graced = expiringPayment().catch((error) => ({ error }));
  await Promise.all([expiring, graced]);
});

after(async () => {
  await cluster?.stop();
  await standin?.close();
  if (keyDir) rmSync(keyDir, { recursive: true, force: true });
});

// ---- the stand-in itself ----

test('the stand-in signs, verifies and encrypts as WeChat Pay API v3 does', async () => {
  const body = JSON.stringify({ appid: APPID });
  // a request signed by a stranger's key: 401 SIGN_ERROR, signed like every answer
  const auth = wx.authorization({ privateKey: wx.rsaKeyPair().privateKey, mchid: MCHID, serialNo: MERCHANT_SERIAL, method: 'POST', pathAndQuery: '/v3/pay/transactions/native', body });
  const res = await fetch(`${standin.base}/v3/pay/transactions/native`, { method: 'POST', headers: { authorization: auth, accept: 'application/json', 'content-type': 'application/json' }, body });
  const text = await res.text();
  assert.equal(res.status, 401);
  assert.equal(JSON.parse(text).code, 'SIGN_ERROR');
  const h = (n) => res.headers.get(n);
  assert.equal(h('wechatpay-serial'), PLATFORM_SERIAL);
  assert.ok(wx.verify(standin.cfg.platformPublicKey, wx.answerMessage(h('wechatpay-timestamp'), h('wechatpay-nonce'), text), h('wechatpay-signature')));
  standin.requests.pop(); // not the server's
  // a notification opens with the APIv3 key and verifies with the platform key
  const n = standin.craft({ resource: { out_trade_no: 'x' } });
  assert.ok(wx.verify(standin.cfg.platformPublicKey, wx.answerMessage(n.headers['Wechatpay-Timestamp'], n.headers['Wechatpay-Nonce'], n.body), n.headers['Wechatpay-Signature']));
  assert.deepEqual(JSON.parse(wx.decryptResource(standin.cfg.apiv3Key, JSON.parse(n.body).resource)), { out_trade_no: 'x' });
});

// ---- WeChat Pay Native, end to end ----

let paid; // the happy path's {sale, rid, payment, order, idNumber, delivery}

test('happy path (Native): intent with the tax, 402 before paying, notification, confirm, the order', async () => {
  const sale = await newSale({ price: 5000, vat: 1300, ct: 1500, freight: 800 });
  const rid = await reserve(sale.id, tokens.alice);
  const idNumber = '11010519491231002X';
  const r = await intent(rid, tokens.alice, { idNumber });
  assert.equal(r.status, 201, show(r));
  const p = r.json;
  const tax = importTax(5000, 1300, 1500);
  assert.equal(tax, 1153);
  assert.equal(p.reservation_id, rid);
  assert.equal(p.provider, 'wechatpay');
  assert.equal(p.state, 'pending');
  assert.deepEqual(p.breakdown, { goods_cny_fen: 5000, discount_cny_fen: 0, freight_cny_fen: 800, tax_cny_fen: tax });
  assert.equal(p.amount_cny_fen, 5000 + 800 + tax);
  assert.equal(p.client.kind, 'wechatpay_native');
  assert.match(p.client.code_url, /^weixin:\/\/wxpay\/bizpayurl\?pr=/);
  assert.ok(p.expires_at_ms >= Date.now() + (MIN_HOLD_S - 5) * 1000, `expires_at_ms ${p.expires_at_ms} is not ≥ now + min_hold_s`);

  // what the provider was asked
  const [order] = nativeOrders(rid);
  assert.ok(order, 'the stand-in got no Native order for ' + rid);
  assert.equal(order.status, 200, order.answer);
  assert.equal(p.client.code_url, JSON.parse(order.answer).code_url);
  const o = order.json;
  assert.ok(o.out_trade_no.length <= 32 && rid.endsWith(o.out_trade_no), `out_trade_no ${o.out_trade_no} for ${rid}`);
  assert.equal(o.appid, APPID);
  assert.equal(o.mchid, MCHID);
  assert.deepEqual(o.amount, { total: p.amount_cny_fen, currency: 'CNY' });
  assert.ok(typeof o.description === 'string' && o.description.length > 0);
  assert.equal(o.notify_url, `${base}/api/v1/payments/wechatpay/notify`);
  assert.match(o.time_expire, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00$/);
  assert.ok(Math.abs(Date.parse(o.time_expire) - p.expires_at_ms) < 1000, `time_expire ${o.time_expire} is not the hold's expiry ${new Date(p.expires_at_ms).toISOString()}`);

  // confirm before paying: 402 (the provider, if asked, says NOTPAY)
  const early = await confirm(rid, p.payment_id, tokens.alice);
  assert.equal(early.status, 402, show(early));
  assert.equal(early.json.error.code, 'payment_required');
  for (const q of queries(rid)) assert.match(q.url, new RegExp(`\\?mchid=${MCHID}$`));

  // the payer pays; the provider notifies
  const ack = await standin.pay(otn(rid));
  assert.ok(ACK.includes(ack.status), `notification answered ${ack.status} ${ack.text}`);
  if (ack.status === 204) assert.equal(ack.text, '');
  const delivery = standin.deliveries.at(-1);

  const c = await confirm(rid, p.payment_id, tokens.alice);
  assert.equal(c.status, 200, show(c));
  assert.equal(c.json.sale, sale.id);
  assert.equal(c.json.sku, sale.sku);
  assert.equal(c.json.qty, 1);
  assert.equal(c.json.amount_cny_fen, p.amount_cny_fen);
  const again = await confirm(rid, p.payment_id, tokens.alice);
  assert.equal(again.status, 200, show(again));
  assert.equal(again.json.order_id, c.json.order_id);

  const g = await api('GET', `/api/v1/orders/${c.json.order_id}`, null, tokens.alice);
  assert.equal(g.status, 200, show(g));
  assert.equal(g.json.state, 'paid');
  assert.equal(g.json.amount_cny_fen, p.amount_cny_fen);
  assert.deepEqual(g.json.breakdown, p.breakdown);
  assert.equal(g.json.buyer.id_number, '110***********002X');
  assert.ok(!g.text.includes(idNumber), 'the order shows the identity number');
  for (const k of ['id_sealed', 'id_ref']) assert.equal(g.json.buyer[k], undefined, `buyer.${k} is shown`);
  assert.equal(g.json.user, undefined);
  assert.ok(g.json.declaration && g.json.declaration.guid, 'no declaration');
  // another viewer does not see it; the pavilion's consul does
  assert.ok([403, 404].includes((await api('GET', `/api/v1/orders/${c.json.order_id}`, null, tokens.mallory)).status));
  assert.equal((await api('GET', `/api/v1/orders/${c.json.order_id}`, null, tokens.consul)).status, 200);

  const mine = await ok(api('GET', '/api/v1/me/orders', null, tokens.alice), 200);
  const listed = (Array.isArray(mine) ? mine : mine.orders).find((x) => x.order_id === c.json.order_id);
  assert.ok(listed, 'the order is not in /me/orders');
  assert.equal(listed.buyer.id_number, '110***********002X');
  assert.equal(listed.buyer.id_sealed, undefined);

  const s = await saleState(sale.id);
  assert.equal(s.sold, 1);
  assert.equal(s.held, 0);
  paid = { sale, rid, payment: p, order: c.json, idNumber, delivery };
});

test('repeating the intent returns the same payment (200)', async () => {
  const sale = await newSale({ price: 2990 });
  const rid = await reserve(sale.id, tokens.bob);
  const idNumber = newIdNumber();
  const first = await intent(rid, tokens.bob, { idNumber });
  assert.equal(first.status, 201, show(first));
  const second = await intent(rid, tokens.bob, { idNumber });
  assert.equal(second.status, 200, show(second));
  assert.equal(second.json.payment_id, first.json.payment_id);
  assert.equal(second.json.amount_cny_fen, first.json.amount_cny_fen);
  assert.deepEqual(second.json.client, first.json.client);
  // only its owner may ask
  const other = await intent(rid, tokens.mallory, { idNumber: newIdNumber() });
  assert.ok([403, 404].includes(other.status), show(other));
});

test('WeChat Pay failing (500 SYSTEM_ERROR) → the intent answers 503 and keeps the hold; again → 201', async () => {
  const sale = await newSale({ price: 1990 });
  const rid = await reserve(sale.id, tokens.bob);
  const idNumber = newIdNumber();
  standin.cfg.failNext = { path: '/v3/pay/transactions/native', status: 500, code: 'SYSTEM_ERROR', message: '系统错误' };
  const r = await intent(rid, tokens.bob, { idNumber });
  standin.cfg.failNext = null;
  assert.equal(r.status, 503, show(r));
  assert.equal(r.json.error.code, 'unavailable');
  assert.equal((await saleState(sale.id)).held, 1);
  const again = await intent(rid, tokens.bob, { idNumber });
  assert.equal(again.status, 201, show(again));
  assert.equal(again.json.client.kind, 'wechatpay_native');
});

test('a Native answer the platform did not sign is not believed → 503', async () => {
  const sale = await newSale({ price: 1990 });
  const rid = await reserve(sale.id, tokens.bob);
  standin.cfg.forgeAnswers = true;
  let r;
  try {
    r = await intent(rid, tokens.bob, { idNumber: newIdNumber() });
  } finally {
    standin.cfg.forgeAnswers = false;
  }
  assert.equal(nativeOrders(rid).length, 1, 'the provider was not asked');
  assert.equal(r.status, 503, `a code_url from a forged answer was handed out: ${show(r)}`);
});

test('H5: the intent asks for an H5 order with the payer\'s IP and answers h5_url', async () => {
  const sale = await newSale({ price: 1990 });
  const rid = await reserve(sale.id, tokens.bob);
  const r = await intent(rid, tokens.bob, { idNumber: newIdNumber(), scene: 'h5' });
  assert.equal(r.status, 201, show(r));
  assert.equal(r.json.client.kind, 'wechatpay_h5');
  assert.match(r.json.client.h5_url, /^https:\/\//);
  const req = standin.requests.find((x) => x.path === '/v3/pay/transactions/h5' && isOtnOf(rid, x.json?.out_trade_no));
  assert.ok(req, 'the stand-in got no H5 order');
  assert.equal(req.status, 200, req.answer);
  assert.equal(req.json.scene_info.h5_info.type, 'Wap');
  assert.match(req.json.scene_info.payer_client_ip, /^127\.0\.0\.1$|^::ffff:127\.0\.0\.1$/);
  assert.equal(req.json.amount.total, r.json.amount_cny_fen);
});

test('a repeated notification is idempotent: one order, sold once', async () => {
  assert.ok(paid, 'needs the happy path');
  const acks = await Promise.all([standin.notifyPaid(otn(paid.rid)), standin.notifyPaid(otn(paid.rid)), standin.notifyPaid(otn(paid.rid))]);
  for (const a of acks) assert.ok(ACK.includes(a.status), `${a.status} ${a.text}`);
  const orders = await ordersOf(paid.sale.id);
  assert.equal(orders.length, 1, JSON.stringify(orders));
  const s = await saleState(paid.sale.id);
  assert.equal(s.sold, 1);
  assert.equal(s.available + s.held + s.sold, s.quantity);
  assert.equal(standin.refundRequests(otn(paid.rid)).length, 0, 'a repeat was refunded');
  const g = await api('GET', `/api/v1/orders/${paid.order.order_id}`, null, tokens.alice);
  assert.equal(g.json.state, 'paid');
});

// ---- notifications that must not be believed ----

let victim; // a pending payment nobody paid
async function victimPayment() {
  victim ??= await pendingPayment(tokens.carol, { price: 3990 });
  return victim;
}
async function assertRefused(answer, v) {
  assert.equal(answer.status, 401, `${answer.status} ${answer.text}`);
  assert.equal(answer.json?.code, 'FAIL', answer.text);
  assert.equal(typeof answer.json?.message, 'string');
  assert.deepEqual(await ordersOf(v.sale.id), []);
  const c = await confirm(v.rid, v.payment.payment_id, tokens.carol);
  assert.equal(c.status, 402, show(c));
  const s = await saleState(v.sale.id);
  assert.equal(s.sold, 0);
  assert.equal(s.held, 1);
}

for (const [kind, what] of [['forged', 'signed by another key'], ['tampered', 'a signed body changed afterwards'], ['stale', 'a correctly signed timestamp 10 minutes old'], ['wrong_key', 'a resource encrypted with another APIv3 key'], ['unsigned', 'no signature headers']]) {
  test(`a ${kind.replace('_', '-')} notification (${what}) → 401, nothing changes`, async () => {
    const v = await victimPayment();
    await assertRefused(await standin.sendBad(kind, otn(v.rid)), v);
  });
}

test('a replayed notification (the same bytes and headers again) → 401, nothing changes', async () => {
  assert.ok(paid?.delivery, 'needs the happy path');
  const r = await standin.replay(paid.delivery);
  assert.equal(r.status, 401, `${r.status} ${r.text}`);
  assert.equal(r.json?.code, 'FAIL');
  assert.equal((await ordersOf(paid.sale.id)).length, 1);
  assert.equal((await saleState(paid.sale.id)).sold, 1);
});

test('a correctly signed notification reusing a seen nonce → 401, no order', async () => {
  assert.ok(paid?.delivery, 'needs the happy path');
  const v = await victimPayment();
  const usedNonce = paid.delivery.headers['Wechatpay-Nonce'];
  const n = standin.craft({ resource: standin.successResource(otn(v.rid), v.payment.amount_cny_fen), nonce: usedNonce });
  await assertRefused(await standin.deliver(`${base}/api/v1/payments/wechatpay/notify`, n), v);
});

test('a notification for an unknown out_trade_no is acknowledged and creates nothing', async () => {
  const sale = await newSale({ price: 1990 });
  const unknown = `${sale.id}_${wx.nonceStr(16)}`.slice(1, 33);
  const n = standin.craft({ resource: standin.successResource(unknown, 2237) });
  const r = await standin.deliver(`${base}/api/v1/payments/wechatpay/notify`, n);
  assert.ok(ACK.includes(r.status), `${r.status} ${r.text}`);
  const n2 = standin.craft({ resource: standin.successResource('nosuchsale_0123456789abcdef', 2237) });
  const r2 = await standin.deliver(`${base}/api/v1/payments/wechatpay/notify`, n2);
  assert.ok(ACK.includes(r2.status), `${r2.status} ${r2.text}`);
  assert.deepEqual(await ordersOf(sale.id), []);
  const s = await saleState(sale.id);
  assert.equal(s.sold, 0);
  assert.equal(s.available, s.quantity);
});

test('a query answer the platform did not sign is not believed (confirm does not make an order)', async () => {
  const v = await pendingPayment(tokens.carol, { price: 1990 });
  standin.cfg.forgeAnswers = true;
  standin.cfg.queryOverride = standin.successResource(otn(v.rid), v.payment.amount_cny_fen);
  try {
    const answers = await pollConfirm(v.rid, v.payment.payment_id, tokens.carol);
    assert.ok(queries(v.rid).length >= 1, 'the server never queried the provider');
    for (const c of answers) assert.ok([402, 503].includes(c.status), `a forged SUCCESS was believed: ${show(c)}`);
  } finally {
    standin.cfg.forgeAnswers = false;
    delete standin.cfg.queryOverride;
  }
  assert.deepEqual(await ordersOf(v.sale.id), []);
});

test('a payment whose notification never came is found by the query at confirm', async () => {
  const v = await pendingPayment(tokens.carol, { price: 1990 });
  assert.equal(await standin.pay(otn(v.rid), { notify: false }), null);
  const c = (await pollConfirm(v.rid, v.payment.payment_id, tokens.carol)).at(-1);
  assert.ok(queries(v.rid).length >= 1, 'the server never queried the provider');
  assert.equal(c.status, 200, show(c));
  assert.equal(c.json.amount_cny_fen, v.payment.amount_cny_fen);
  const g = await api('GET', `/api/v1/orders/${c.json.order_id}`, null, tokens.carol);
  assert.equal(g.json.state, 'paid');
  // the late notification then is a repeat
  const ack = await standin.notifyPaid(otn(v.rid));
  assert.ok(ACK.includes(ack.status), `${ack.status} ${ack.text}`);
  assert.equal((await ordersOf(v.sale.id)).length, 1);
  assert.equal((await saleState(v.sale.id)).sold, 1);
});

test('a notification and confirms at the same moment make one order', async () => {
  const v = await pendingPayment(tokens.carol, { price: 1990 });
  // past the point where a confirm asks the provider itself (NOTPAY yet)
  const first = await pollConfirm(v.rid, v.payment.payment_id, tokens.carol);
  assert.equal(first.at(-1).status, 402, show(first.at(-1)));
  await standin.pay(otn(v.rid), { notify: false });
  const [ack, ...confirms] = await Promise.all([standin.notifyPaid(otn(v.rid)), confirm(v.rid, v.payment.payment_id, tokens.carol), confirm(v.rid, v.payment.payment_id, tokens.carol)]);
  assert.ok(ACK.includes(ack.status), `${ack.status} ${ack.text}`);
  for (const c of confirms) assert.equal(c.status, 200, show(c));
  assert.equal(confirms[0].json.order_id, confirms[1].json.order_id);
  assert.equal((await ordersOf(v.sale.id)).length, 1);
  assert.equal((await saleState(v.sale.id)).sold, 1);
  assert.equal(standin.refundRequests(otn(v.rid)).length, 0);
});

test('a verified success for another amount than the payment\'s is refunded, no order', async () => {
  const v = await pendingPayment(tokens.carol, { price: 1990 });
  await standin.pay(otn(v.rid), { notify: false });
  const tx = standin.transactions.get(otn(v.rid)).tx;
  const other = v.payment.amount_cny_fen - 100;
  const n = standin.craft({ resource: { ...tx, amount: { ...tx.amount, total: other, payer_total: other } } });
  const ack = await standin.deliver(`${base}/api/v1/payments/wechatpay/notify`, n);
  assert.ok(ACK.includes(ack.status), `${ack.status} ${ack.text}`);
  await waitFor('the refund request', () => standin.refundRequests(otn(v.rid)).length > 0, 10000);
  assert.deepEqual((await ordersOf(v.sale.id)).filter((o) => o.state !== 'refunded'), []);
  assert.equal((await saleState(v.sale.id)).sold, 0);
});

// ---- identity numbers ----

for (const [what, id] of [
  ['a wrong check character', (() => { const ok18 = newIdNumber(); return ok18.slice(0, 17) + (ok18[17] === '0' ? '1' : '0'); })()],
  ['an impossible birth date (19990231)', (() => { const f = '110105199902310' + '12'; return f + checkChar(f); })()],
  ['the wrong length (17 characters)', newIdNumber().slice(0, 17)],
]) {
  test(`an identity number with ${what} → 400 naming buyer.id_number`, async () => {
    const sale = await newSale({ price: 1990 });
    const rid = await reserve(sale.id, tokens.dave);
    const r = await intent(rid, tokens.dave, { idNumber: id });
    assert.equal(r.status, 400, show(r));
    assert.equal(r.json.error.code, 'bad_request');
    assert.match(r.json.error.message, /buyer\.id_number/);
    assert.ok(!r.text.includes(id), 'the answer repeats the identity number');
    assert.equal(nativeOrders(rid).length, 0, 'the provider was asked anyway');
  });
}

// ---- the dev provider ----

test('the dev provider: intent, complete, confirm', async () => {
  const sale = await newSale({ price: 1590, freight: 300 });
  const rid = await reserve(sale.id, tokens.dave);
  const idNumber = newIdNumber();
  const r = await intent(rid, tokens.dave, { provider: 'dev', idNumber });
  assert.equal(r.status, 201, show(r));
  const p = r.json;
  assert.equal(p.provider, 'dev');
  assert.equal(p.client.kind, 'dev');
  assert.equal(p.client.complete_url, `/api/v1/payments/dev/${p.payment_id}/complete`);
  assert.equal(p.amount_cny_fen, 1590 + 300 + importTax(1590));
  assert.equal((await confirm(rid, p.payment_id, tokens.dave)).status, 402);
  const stranger = await api('POST', p.client.complete_url, null, tokens.mallory);
  assert.ok([403, 404].includes(stranger.status), `another viewer completed it: ${show(stranger)}`);
  const done = await api('POST', p.client.complete_url, null, tokens.dave);
  assert.equal(done.status, 200, show(done));
  assert.equal(done.json.payment_id, p.payment_id);
  const c = await confirm(rid, p.payment_id, tokens.dave);
  assert.equal(c.status, 200, show(c));
  const g = await api('GET', `/api/v1/orders/${c.json.order_id}`, null, tokens.dave);
  assert.equal(g.json.state, 'paid');
  assert.equal(g.json.provider ?? 'dev', 'dev');
  assert.equal(g.json.buyer.id_number, masked(idNumber));
  assert.equal(nativeOrders(rid).length, 0, 'the dev provider asked WeChat Pay');
  // a dev notification forged by anyone (signed by a key the server did not make) is refused
  const forged = standin.craft({ resource: standin.successResource(otn(rid), p.amount_cny_fen) });
  const fr = await standin.deliver(`${base}/api/v1/payments/dev/notify`, forged);
  assert.equal(fr.status, 401, `${fr.status} ${fr.text}`);
});

// ---- a consul's refund ----

// A paid WeChat Pay order of viewer tok: {sale, rid, payment, order (confirm's answer)}.
async function paidOrder(tok, saleOpts = { price: 2590 }) {
  const v = await pendingPayment(tok, saleOpts);
  const ack = await standin.pay(otn(v.rid));
  assert.ok(ACK.includes(ack.status), `${ack.status} ${ack.text}`);
  const c = await confirm(v.rid, v.payment.payment_id, tok);
  assert.equal(c.status, 200, show(c));
  return { ...v, order: c.json };
}
const getOrder = async (id) => (await ok(api('GET', `/api/v1/orders/${id}`, null, tokens.consul), 200));

test('a consul refunds an order: the provider is asked, the order becomes refunded once the provider confirms, units stay sold', async () => {
  const v = await paidOrder(tokens.bob);
  const id = v.order.order_id;
  const before = await saleState(v.sale.id);
  assert.equal(before.sold, 1);

  const viewer = await api('POST', `/api/v1/orders/${id}/refund`, { reason: 'mine' }, tokens.bob);
  assert.equal(viewer.status, 403, show(viewer));
  standin.cfg.refundAuto = false; // the refund stays PROCESSING until completeRefund()
  let req;
  try {
    const r = await api('POST', `/api/v1/orders/${id}/refund`, { reason: '瓶子破损 broken bottle' }, tokens.consul);
    assert.equal(r.status, 200, show(r));
    // payments.md: refund.state pending → done when the provider confirms (the server says
    // "processing" while WeChat Pay does)
    assert.ok(r.json.refund && ['pending', 'processing'].includes(r.json.refund.state), show(r));
    await waitFor('the refund request', () => standin.refundRequests(otn(v.rid)).length > 0, 10000);
    [req] = standin.refundRequests(otn(v.rid));
    assert.equal(req.json.out_trade_no, otn(v.rid));
    assert.ok(typeof req.json.out_refund_no === 'string' && req.json.out_refund_no.length > 0);
    assert.deepEqual(req.json.amount, { refund: v.payment.amount_cny_fen, total: v.payment.amount_cny_fen, currency: 'CNY' });
    assert.equal(JSON.parse(req.answer).status, 'PROCESSING');
    // WeChat Pay answered PROCESSING: nothing is refunded yet
    await new Promise((r) => setTimeout(r, 1000));
    const pending = await getOrder(id);
    assert.ok(['pending', 'processing'].includes(pending.refund?.state), `refund.state is ${pending.refund?.state} while WeChat Pay says PROCESSING (state ${pending.state})`);
    assert.notEqual(pending.state, 'refunded', 'the order shows refunded while WeChat Pay says PROCESSING');
  } finally {
    standin.cfg.refundAuto = true;
    // REFUND.SUCCESS
    if (req) {
      const note = await standin.completeRefund(req.json.out_refund_no);
      assert.ok(ACK.includes(note.status), `REFUND.SUCCESS answered ${note.status} ${note.text}`);
    }
  }
  const order = await waitFor('the order refunded', async () => {
    const g = await getOrder(id);
    return g.state === 'refunded' && g.refund?.state === 'done' ? g : null;
  }, 10000, 250);
  // payments.md: refund {state, reason, amount_cny_fen, refund_id, at_ms}: what the consul asked
  // for stays when the provider's confirmation arrives
  assert.equal(order.refund.amount_cny_fen, v.payment.amount_cny_fen, `refund: ${JSON.stringify(order.refund)}`);
  assert.equal(order.refund.reason, '瓶子破损 broken bottle', `refund: ${JSON.stringify(order.refund)}`);
  const after = await saleState(v.sale.id);
  assert.equal(after.sold, before.sold);
  assert.equal(after.available, before.available);
  // refunding again does not refund twice
  const again = await api('POST', `/api/v1/orders/${id}/refund`, { reason: 'again' }, tokens.consul);
  assert.ok([200, 409].includes(again.status), show(again));
  assert.equal(new Set(standin.refundRequests(otn(v.rid)).map((x) => x.json.out_refund_no)).size, 1);
});

test('a refund WeChat Pay reports ABNORMAL is not shown as done', async () => {
  const v = await paidOrder(tokens.bob);
  const id = v.order.order_id;
  standin.cfg.refundAuto = false;
  try {
    const r = await api('POST', `/api/v1/orders/${id}/refund`, { reason: 'wrong size' }, tokens.consul);
    assert.equal(r.status, 200, show(r));
    await waitFor('the refund request', () => standin.refundRequests(otn(v.rid)).length > 0, 10000);
  } finally {
    standin.cfg.refundAuto = true;
  }
  const [req] = standin.refundRequests(otn(v.rid));
  const note = await standin.completeRefund(req.json.out_refund_no, 'ABNORMAL');
  assert.ok(ACK.includes(note.status), `REFUND.ABNORMAL answered ${note.status} ${note.text}`);
  const order = await waitFor('the refund failed', async () => {
    const g = await getOrder(id);
    return g.refund?.state === 'failed' ? g : null;
  }, 10000, 250).catch(async () => getOrder(id));
  assert.equal(order.refund?.state, 'failed', JSON.stringify(order.refund));
  assert.notEqual(order.state, 'refunded', 'the order shows refunded although no money went back');
});

test('money for a hold the buyer released: the server asks for a refund, no order', async () => {
  const v = await pendingPayment(tokens.dave, { price: 1990 });
  const del = await api('DELETE', `/api/v1/reservations/${v.rid}`, null, tokens.dave);
  assert.equal(del.status, 200, show(del));
  const ack = await standin.pay(otn(v.rid));
  assert.ok(ACK.includes(ack.status), `${ack.status} ${ack.text}`);
  await waitFor('the refund request', () => standin.refundRequests(otn(v.rid)).length > 0, 10000);
  const [req] = standin.refundRequests(otn(v.rid));
  assert.deepEqual(req.json.amount, { refund: v.payment.amount_cny_fen, total: v.payment.amount_cny_fen, currency: 'CNY' });
  assert.deepEqual((await ordersOf(v.sale.id)).filter((o) => o.state !== 'refunded'), []);
  const c = await confirm(v.rid, v.payment.payment_id, tokens.dave);
  assert.notEqual(c.status, 200, show(c));
  const s = await saleState(v.sale.id);
  assert.equal(s.sold, 0);
  assert.equal(s.available, s.quantity);
});

// ---- per-person quotas under a race ----

test('two accounts of one person racing past the annual quota: at most one order counts', async (t) => {
  // 6000 + 546 tax each; the quota (10000) allows one
  const sale = await newSale({ price: 6000, quantity: 10, perUser: 2 });
  const idNumber = newIdNumber();
  const who = [tokens.bob, tokens.bob, tokens.carol, tokens.carol];
  const rids = [];
  for (const t of who) rids.push(await reserve(sale.id, t));
  const intents = await Promise.all(rids.map((rid, i) => intent(rid, who[i], { idNumber })));
  const made = [];
  intents.forEach((r, i) => {
    if (r.status === 201) made.push({ rid: rids[i], tok: who[i], payment: r.json });
    else {
      assert.equal(r.status, 409, show(r));
      assert.equal(r.json.error.code, 'quota_exceeded');
    }
  });
  assert.ok(made.length >= 1, 'no intent was accepted');
  const acks = await Promise.all(made.map((m) => standin.pay(otn(m.rid))));
  for (const a of acks) assert.ok(ACK.includes(a.status), `${a.status} ${a.text}`);
  const counted = [];
  for (const m of made) {
    const c = await confirm(m.rid, m.payment.payment_id, m.tok);
    const refunded = standin.refundRequests(otn(m.rid)).length > 0;
    if (c.status === 200) {
      const g = await api('GET', `/api/v1/orders/${c.json.order_id}`, null, tokens.consul);
      if (g.json.state !== 'refunded') counted.push(m.rid);
      else assert.ok(refunded, `${m.rid}: order refunded without asking the provider`);
    } else {
      // paid, but over the quota: the money goes back
      await waitFor(`the refund of ${m.rid}`, () => standin.refundRequests(otn(m.rid)).length > 0, 10000);
    }
  }
  t.diagnostic(`intents ${intents.map((r) => r.status).join(' ')}; paid ${made.length}; refunds asked for ${made.filter((m) => standin.refundRequests(otn(m.rid)).length > 0).length}`);
  assert.equal(counted.length, 1, `orders that count: ${counted.join(', ')}`);
  const live = (await ordersOf(sale.id)).filter((o) => o.state !== 'refunded');
  assert.equal(live.length, 1, JSON.stringify(live));
  // afterwards, a third account of the same person is refused at the intent
  const rid = await reserve(sale.id, tokens.dave);
  const late = await intent(rid, tokens.dave, { idNumber });
  assert.equal(late.status, 409, show(late));
  assert.equal(late.json.error.code, 'quota_exceeded');
});

// ---- durability ----

test('kill -9 right after the notification was acknowledged: the order is there after restart', async () => {
  const n2 = await cluster.node({ config });
  const sale = await newSale({ price: 1990 });
  const rid = await reserve(sale.id, tokens.alice, n2.base);
  const p = await ok(intent(rid, tokens.alice, { idNumber: newIdNumber(), b: n2.base }), 201);
  const [order] = nativeOrders(rid);
  assert.equal(order.json.notify_url, `${n2.base}/api/v1/payments/wechatpay/notify`);
  const ack = await standin.pay(otn(rid));
  n2.proc.kill('SIGKILL');
  assert.ok(ACK.includes(ack.status), `${ack.status} ${ack.text}`);
  await n2.proc.exited;
  const n3 = await cluster.node({ config });
  const orders = await ordersOf(sale.id);
  assert.equal(orders.length, 1, JSON.stringify(orders));
  const c = await confirm(rid, p.payment_id, tokens.alice, n3.base);
  assert.equal(c.status, 200, show(c));
  const g = await apiAt(n3.base, 'GET', `/api/v1/orders/${c.json.order_id}`, null, tokens.alice);
  assert.equal(g.json.state, 'paid');
  assert.equal((await saleState(sale.id, n3.base)).sold, 1);
  n3.proc.kill('SIGTERM');
  await n3.proc.exited;
});

// ---- money after the hold expired ----

test('success within the notify grace after the hold\'s expiry: the order is made', async () => {
  const e = await graced;
  if (e.error) throw e.error;
  const { sale, rid, payment } = e;
  // a second into the grace: the hold is kept for the notification that may still come
  const wait = payment.expires_at_ms + 1000 - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  assert.ok(Date.now() < payment.expires_at_ms + NOTIFY_GRACE_S * 1000 - 5000, 'too late to test the grace');
  assert.equal((await saleState(sale.id)).held, 1, 'the hold went at its expiry despite the pending payment');
  // paid at the last second before time_expire, notified late
  const ack = await standin.pay(otn(rid), { force: true });
  assert.ok(ACK.includes(ack.status), `${ack.status} ${ack.text}`);
  const c = await confirm(rid, payment.payment_id, tokens.alice);
  assert.equal(c.status, 200, show(c));
  assert.equal((await getOrder(c.json.order_id)).state, 'paid');
  assert.equal((await saleState(sale.id)).sold, 1);
  assert.equal(standin.refundRequests(otn(rid)).length, 0);
});

test('success after the hold expired: the server asks for a refund, no order', async () => {
  const e = await expiring;
  if (e.error) throw e.error;
  const { sale, rid, payment } = e;
  // the hold lives until expires_at_ms + notify_grace_s; the sweeper then releases it
  const waitMs = payment.expires_at_ms + NOTIFY_GRACE_S * 1000 - Date.now() + 30000;
  await waitFor('the expired hold released', async () => (await saleState(sale.id)).held === 0, Math.max(waitMs, 30000), 500);
  // the money arrives anyway (paid at the last second, notified late)
  const ack = await standin.pay(otn(rid), { force: true });
  assert.ok(ACK.includes(ack.status), `${ack.status} ${ack.text}`);
  await waitFor('the refund request', () => standin.refundRequests(otn(rid)).length > 0, 10000);
  const [req] = standin.refundRequests(otn(rid));
  assert.deepEqual(req.json.amount, { refund: payment.amount_cny_fen, total: payment.amount_cny_fen, currency: 'CNY' });
  const live = (await ordersOf(sale.id)).filter((o) => o.state !== 'refunded');
  assert.deepEqual(live, []);
  const c = await confirm(rid, payment.payment_id, tokens.alice);
  assert.notEqual(c.status, 200, show(c));
  const s = await saleState(sale.id);
  assert.equal(s.sold, 0);
  assert.equal(s.available, s.quantity);
});

// ---- the server as WeChat Pay's client ----

test('every request the server made was signed correctly and followed the basic rules', () => {
  const refused = standin.requests.filter((r) => r.authError);
  assert.deepEqual(refused.map((r) => `${r.method} ${r.url}: ${r.authError}`), []);
  assert.deepEqual(standin.violations, []);
  const failed = standin.requests.filter((r) => r.status >= 400 && !r.injected);
  assert.deepEqual(failed.map((r) => `${r.method} ${r.url} → ${r.status} ${r.answer}`), []);
});

test('no identity number appears in the servers\' logs', () => {
  const logs = readdirSync(cluster.dir).filter((f) => f.endsWith('.log')).map((f) => [f, readFileSync(join(cluster.dir, f), 'utf8')]);
  assert.ok(logs.length > 0);
  for (const [f, text] of logs) for (const id of usedIds) assert.ok(!text.includes(id) && !text.includes(id.slice(0, 17)), `${f} holds an identity number`);
});

test('the notifications are counted by what they did (silklive_payment_notifications_total)', async () => {
  const text = await (await fetch(`${base}/metrics`)).text();
  for (const result of ['order', 'repeat', 'refund', 'unknown', 'rejected']) {
    const m = text.match(new RegExp(`^silklive_payment_notifications_total\\{result="${result}"\\} (\\d+)`, 'm'));
    assert.ok(m && Number(m[1]) > 0, `no ${result} counted`);
  }
});
