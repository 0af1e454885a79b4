// customs.test: every paid order declared to customs — a real silklive and Redis (harness.mjs)
// against a local stand-in of the customs gateway (customs-gateway.mjs) that checks each
// CEB311Message and counts declarations per guid. docs/design/payments.md "Customs outbox" is the
// contract: a paid order is declared; a gateway that is down, failing or slow loses nothing and
// declares nothing twice; a refusal shows its reason; an accepted declaration waits for the signed
// final receipt; a pavilion without its enterprise codes keeps its declarations waiting, saying
// why; a node killed with -9 between payment and declaration is replaced by one that declares the
// order; a node without a gateway takes nothing, and a node with one later declares it.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { apiAt, idCheckChar, startCluster, waitFor } from './harness.mjs';
import { startGateway, sendReceipt, fen } from './customs-gateway.mjs';

const PAV = 'CL';
const CHANNEL = 'cl-customs';
const EBC_CODE = 'CL00000001';
const EBC_NAME = '智利葡萄酒进出口有限公司';
const EBP_CODE = '3120990001';
const RECEIPT_SECRET = crypto.randomBytes(16).toString('hex');
const CONSIGNEE = { name: '张三', phone: '13800138000', address: '上海市浦东新区世纪大道100号', district: '310115' };

let cluster, node, gw, config, tokens, base;

// ---- identity numbers (GB 11643) ----
let idSeq = 200;
const idNumbers = ['11010519491231002X']; // every one used, for the check of the logs
function newIdNumber() {
  const first17 = `11010519850307${String(++idSeq).padStart(3, '0')}`;
  idNumbers.push(first17 + idCheckChar(first17));
  return idNumbers.at(-1);
}

const api = (...a) => apiAt(base, ...a);
const show = (r) => `${r.status} ${r.text}`;
async function ok(r, status = [200, 201]) {
  r = await r;
  assert.ok([].concat(status).includes(r.status), show(r));
  return r.json;
}

let skuSeq = 0;
async function newSale({ price = 1990, freight = 500, quantity = 20, b = base } = {}) {
  const sku = `cl-cus-${++skuSeq}-${crypto.randomBytes(3).toString('hex')}`;
  const product = { sku, title: { en: `Carmenere ${skuSeq}`, zh: `佳美娜 ${skuSeq}` }, price: { amount_minor: 12990, currency: 'CLP' }, price_cny_fen: price, stock_location: 'bonded_sh', freight_cny_fen: freight };
  await ok(apiAt(b, 'POST', `/api/v1/pavilions/${PAV}/products`, product, tokens.consul), 201);
  const sale = await ok(apiAt(b, 'POST', '/api/v1/sales', { channel: CHANNEL, sku, quantity, price_cny_fen: price, per_user_limit: 10, hold_ttl_s: 300 }, tokens.consul), 201);
  await waitFor('the sale active', async () => (await apiAt(b, 'GET', `/api/v1/sales/${sale.id}`)).json?.state === 'active');
  return { id: sale.id, sku, price, title: product.title };
}

// A paid order through the dev provider: reserve, pay, complete, confirm. The order (read form),
// with the identity number it was paid with.
async function paidOrder(tok, { sale, b = base } = {}) {
  sale ??= await newSale({ b });
  const r = await ok(apiAt(b, 'POST', `/api/v1/sales/${sale.id}/reservations`, { qty: 1 }, tok, { 'idempotency-key': crypto.randomUUID() }), 201);
  const idNumber = newIdNumber();
  const buyer = { name: '张三', id_type: 'resident_id', id_number: idNumber, phone: '13800138000' };
  const p = await ok(apiAt(b, 'POST', `/api/v1/reservations/${r.reservation_id}/payment`, { provider: 'dev', buyer, consignee: CONSIGNEE }, tok), 201);
  await ok(apiAt(b, 'POST', p.client.complete_url, null, tok), 200);
  const order = await ok(apiAt(b, 'POST', `/api/v1/reservations/${r.reservation_id}/confirm`, { payment_ref: p.payment_id }, tok), 200);
  return { order, idNumber, sale, payment: p };
}

const orderNow = async (id, tok, b = base) => ok(apiAt(b, 'GET', `/api/v1/orders/${id}`, null, tok), 200);
async function until(what, id, tok, pred, ms = 30000, b = base) {
  let last;
  try {
    return await waitFor(what, async () => {
      last = await orderNow(id, tok, b);
      return pred(last) ? last : null;
    }, ms, 250);
  } catch (e) {
    e.message += `; the order: ${JSON.stringify(last)}`;
    throw e;
  }
}
const declared = (o) => o.state === 'declared';
const listed = async (state, tok, b = base) => (await ok(apiAt(b, 'GET', `/api/v1/customs/declarations?state=${state}`, null, tok), 200)).declarations;

function configText() {
  return `[transcode]
ladder =
[payments]
dev = true
[commerce]
identity_key = ${crypto.randomBytes(32).toString('hex')}
[customs]
gateway_url = ${gw.url}
ebp_code = ${EBP_CODE}
ebp_name = 丝路直播
timeout_ms = 1500
receipt_secret = ${RECEIPT_SECRET}
`;
}

before(async () => {
  gw = await startGateway({ log: process.env.GATEWAY_LOG ? console.log : undefined });
  config = configText();
  cluster = await startCluster();
  node = await cluster.node({ config });
  base = node.base;
  tokens = {
    admin: cluster.token('admin', 'ops'),
    consul: cluster.token('consul', 'consul-cl', ['--pavilion', PAV]),
    consulPE: cluster.token('consul', 'consul-pe', ['--pavilion', 'PE']),
    alice: cluster.token('viewer', 'alice'),
    bob: cluster.token('viewer', 'bob'),
    carol: cluster.token('viewer', 'carol'),
  };
  await ok(api('POST', '/api/v1/pavilions', { code: PAV, name: { en: 'Chile', zh: '智利' }, currency: 'CLP', languages: ['es'], ebc_code: EBC_CODE, ebc_name: EBC_NAME }, tokens.admin), 201);
  await ok(api('POST', '/api/v1/pavilions', { code: 'PE', name: { en: 'Peru', zh: '秘鲁' }, currency: 'PEN', languages: ['es'] }, tokens.admin), 201);
  await ok(api('POST', `/api/v1/pavilions/${PAV}/channels`, { id: CHANNEL, title: { en: 'Customs night' } }, tokens.consul), 201);
});

after(async () => {
  await cluster?.stop();
  await gw?.close();
});

// Every declaration the gateway holds: one guid per order, the same content at every ask.
function assertOncePerOrder(orderIds) {
  for (const id of orderIds) {
    const guids = gw.byOrder.get(id);
    assert.ok(guids, `the gateway never got order ${id}`);
    assert.equal(guids.size, 1, `order ${id} was declared under ${guids.size} guids`);
    const d = gw.declarations.get([...guids][0]);
    assert.ok(!d.changed, `order ${id}: the same guid carried another declaration`);
  }
}

test('a paid order is declared: a checked CEB311Message, once, and the order becomes declared', async () => {
  gw.mode = 'accept';
  const sale = await newSale({ price: 5000, freight: 800 });
  const { order, idNumber } = await paidOrder(tokens.alice, { sale });
  assert.equal(order.state, 'paid');
  const guid = order.declaration.guid;
  assert.match(guid, /^[0-9A-F-]{36}$/);

  const o = await until('the order declared', order.order_id, tokens.alice, declared);
  assert.equal(o.declaration.state, 'declared');
  assert.equal(o.declaration.guid, guid);
  assert.equal(o.declaration.receipt.status, '120');
  assert.ok(o.declaration.attempts >= 1);
  assert.equal(o.buyer.id_number, idNumber.slice(0, 3) + '*'.repeat(11) + idNumber.slice(14));

  // what the gateway got
  const posts = gw.requests.filter((r) => r.guid === guid);
  assert.equal(posts.length, 1, JSON.stringify(posts));
  assert.deepEqual(posts[0].problems, []);
  assert.equal(posts[0].idempotencyKey, guid);
  assert.match(posts[0].contentType, /^application\/xml/);
  assertOncePerOrder([order.order_id]);
  const { head, lines } = gw.declarations.get(guid);
  assert.equal(head.orderNo, order.order_id);
  assert.equal(head.ebpCode, EBP_CODE);
  assert.equal(head.ebcCode, EBC_CODE);
  assert.equal(head.ebcName, EBC_NAME);
  assert.equal(head.buyerIdNumber, idNumber);
  assert.equal(head.buyerName, '张三');
  assert.equal(head.buyerRegNo, 'alice');
  assert.equal(head.consigneeDitrict, CONSIGNEE.district);
  assert.equal(head.payTransactionId, order.transaction_id);
  assert.equal(fen(head.goodsValue), order.breakdown.goods_cny_fen);
  assert.equal(fen(head.freight), 800);
  assert.equal(fen(head.taxTotal), order.breakdown.tax_cny_fen);
  assert.equal(fen(head.acturalPaid), order.amount_cny_fen);
  assert.equal(lines.length, 1);
  assert.equal(lines[0].itemNo, sale.sku);
  assert.equal(lines[0].itemName, sale.title.zh);
  assert.equal(lines[0].unit, '011');
  assert.equal(lines[0].country, '412'); // Chile, from the pavilion
  assert.equal(fen(lines[0].price), 5000);

  // the XML for the pavilion's consul (and admin), not for the buyer or another pavilion
  const x = await api('GET', `/api/v1/orders/${order.order_id}/declaration`, null, tokens.consul);
  assert.equal(x.status, 200, show(x));
  assert.match(x.type, /^application\/xml/);
  assert.ok(x.text.includes(`<ceb:orderNo>${order.order_id}</ceb:orderNo>`), x.text);
  assert.ok(x.text.includes(`guid="${guid}"`));
  assert.equal((await api('GET', `/api/v1/orders/${order.order_id}/declaration`, null, tokens.admin)).status, 200);
  assert.equal((await api('GET', `/api/v1/orders/${order.order_id}/declaration`, null, tokens.alice)).status, 403);
  assert.equal((await api('GET', `/api/v1/orders/${order.order_id}/declaration`, null, tokens.consulPE)).status, 403);

  // counted
  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, /silklive_customs_declarations_total\{result="declared"\} [1-9]/);
  assert.match(metrics, /silklive_customs_queue_length \d+/);
  assert.match(metrics, /silklive_customs_oldest_age_seconds \d+/);
  // the identity number is in no metric
  assert.ok(!metrics.includes(idNumber));
});

test('the gateway failing, then down for a while, then back: nothing lost, nothing declared twice', async () => {
  gw.mode = 'error';
  const sale = await newSale({ price: 2590 });
  const first = await paidOrder(tokens.bob, { sale });
  const o1 = await until('a 500 recorded', first.order.order_id, tokens.bob, (o) => o.declaration.attempts >= 1);
  assert.match(o1.declaration.reason, /HTTP 500/);
  assert.equal(o1.state, 'paid');
  assert.equal(o1.declaration.state, 'queued');
  gw.mode = 'garbage';
  const o2 = await until('garbage recorded', first.order.order_id, tokens.bob, (o) => /not a CEB312Message/.test(o.declaration.reason ?? ''));
  assert.ok(o2.declaration.attempts >= 2);

  await gw.down();
  gw.mode = 'accept';
  const more = [await paidOrder(tokens.bob, { sale }), await paidOrder(tokens.carol, { sale })];
  const all = [first, ...more];
  for (const { order } of all) {
    const o = await until('the gateway unreachable recorded', order.order_id, tokens.admin,
      (x) => x.declaration.attempts >= 2 && /cannot be reached/.test(x.declaration.reason ?? ''));
    assert.equal(o.state, 'paid');
  }
  // the consul sees them waiting, with why
  const queued = await listed('queued', tokens.consul);
  for (const { order } of all) {
    const q = queued.find((d) => d.order_id === order.order_id);
    assert.ok(q, `${order.order_id} is not in the queued list: ${JSON.stringify(queued)}`);
    assert.equal(q.state, 'queued');
    assert.equal(q.guid, order.declaration.guid);
    assert.equal(q.pavilion, PAV);
    assert.ok(q.attempts >= 2);
    assert.match(q.reason, /cannot be reached/);
  }
  assert.equal((await listed('queued', tokens.consulPE)).filter((d) => all.some(({ order }) => order.order_id === d.order_id)).length, 0);
  assert.equal((await api('GET', '/api/v1/customs/declarations?state=queued', null, tokens.bob)).status, 403);

  await gw.up();
  for (const { order } of all) await until('declared after the gateway came back', order.order_id, tokens.admin, declared, 90000);
  assertOncePerOrder(all.map(({ order }) => order.order_id));
  const after = await listed('queued', tokens.admin);
  assert.equal(after.filter((d) => all.some(({ order }) => order.order_id === d.order_id)).length, 0, JSON.stringify(after));
});

test('an answer that comes after the timeout: asked again with the same guid, declared once', async () => {
  gw.mode = 'late';
  gw.lateMs = 4000;
  const { order } = await paidOrder(tokens.alice);
  const guid = order.declaration.guid;
  await waitFor('the gateway got it', () => gw.postsFor(guid) >= 1, 15000);
  const o = await until('the timeout recorded', order.order_id, tokens.alice, (x) => x.declaration.attempts >= 1);
  assert.match(o.declaration.reason, /did not answer within 1500 ms/);
  gw.mode = 'accept';
  await until('declared', order.order_id, tokens.alice, declared, 30000);
  assert.ok(gw.postsFor(guid) >= 2, `posts ${gw.postsFor(guid)}`);
  assertOncePerOrder([order.order_id]);
});

test('a refusal: declaration_rejected with the reason, in the order and in the rejected list', async () => {
  gw.mode = 'refuse';
  // customs may quote an identity number: the server shows and logs it masked
  gw.refuseInfo = '订购人身份信息校验未通过 (11010519491231002X)';
  const reason = '订购人身份信息校验未通过 (110***********002X)';
  const { order } = await paidOrder(tokens.carol);
  const o = await until('rejected', order.order_id, tokens.carol, (x) => x.state === 'declaration_rejected');
  assert.equal(o.declaration.state, 'rejected');
  assert.equal(o.declaration.reason, reason);
  assert.equal(o.declaration.receipt.status, '100');
  const rejected = await listed('rejected', tokens.consul);
  const r = rejected.find((d) => d.order_id === order.order_id);
  assert.ok(r, JSON.stringify(rejected));
  assert.equal(r.reason, reason);
  assert.equal(r.state, 'rejected');
  assert.ok((await listed('rejected', tokens.admin)).some((d) => d.order_id === order.order_id));
  assert.ok(!(await listed('rejected', tokens.consulPE)).some((d) => d.order_id === order.order_id));
  assertOncePerOrder([order.order_id]);
  // refused is final: not asked again
  const posts = gw.postsFor(order.declaration.guid);
  await new Promise((r) => setTimeout(r, 2500));
  assert.equal(gw.postsFor(order.declaration.guid), posts);
  gw.mode = 'accept';
});

test('accepted and in progress, then the signed final receipt declares it', async () => {
  gw.mode = 'async';
  const { order } = await paidOrder(tokens.alice);
  const guid = order.declaration.guid;
  const o = await until('delivered', order.order_id, tokens.alice, (x) => x.declaration.state === 'delivered');
  assert.equal(o.state, 'paid');
  assert.equal(o.declaration.receipt.status, '2');
  // receipts must be signed with the secret
  const forged = await sendReceipt(base, 'another secret', { guid, status: '120' });
  assert.equal(forged.status, 401, forged.text);
  const garbage = await sendReceipt(base, RECEIPT_SECRET, { guid, status: '7' });
  assert.equal(garbage.status, 400, garbage.text);
  for (const body of ['not xml', `<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]><CEB312Message><OrderReturn><guid>${guid}</guid><returnStatus>120</returnStatus><returnInfo>&x;</returnInfo></OrderReturn></CEB312Message>`]) {
    const sig = crypto.createHmac('sha256', RECEIPT_SECRET).update(body).digest('hex');
    const res = await fetch(`${base}/api/v1/customs/receipts`, { method: 'POST', headers: { 'content-type': 'application/xml', 'x-silklive-signature': sig }, body });
    assert.equal(res.status, 400, await res.text());
  }
  const unknown = await sendReceipt(base, RECEIPT_SECRET, { guid: crypto.randomUUID().toUpperCase(), status: '120' });
  assert.equal(unknown.status, 404, unknown.text);
  assert.equal((await orderNow(order.order_id, tokens.alice)).state, 'paid');
  gw.decide(guid, '120');
  const r = await sendReceipt(base, RECEIPT_SECRET, { guid, status: '120', info: '入库成功', orderNo: order.order_id });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.state, 'declared');
  const d = await orderNow(order.order_id, tokens.alice);
  assert.equal(d.state, 'declared');
  assert.equal(d.declaration.receipt.status, '120');
  // the same receipt again changes nothing
  const again = await sendReceipt(base, RECEIPT_SECRET, { guid, status: '120', info: '入库成功' });
  assert.equal(again.status, 200, again.text);
  assert.equal(again.json.state, 'declared');
  // and the outbox lets it go: not in the queued list once the job has seen it final
  await waitFor('out of the queue', async () => !(await listed('queued', tokens.admin)).some((x) => x.order_id === order.order_id), 70000, 1000);
  assertOncePerOrder([order.order_id]);
  gw.mode = 'accept';
});

test('a pavilion without its customs enterprise codes: the declaration waits with the reason, the gateway is not asked', async () => {
  await ok(api('POST', '/api/v1/pavilions/PE/channels', { id: 'pe-customs', title: { en: 'Coffee' } }, tokens.consulPE), 201);
  const sku = `pe-cus-${crypto.randomBytes(3).toString('hex')}`;
  await ok(api('POST', '/api/v1/pavilions/PE/products', { sku, title: { en: 'Geisha coffee, 250 g' }, price: { amount_minor: 6900, currency: 'PEN' }, price_cny_fen: 12800, stock_location: 'bonded_sh' }, tokens.consulPE), 201);
  const sale = await ok(api('POST', '/api/v1/sales', { channel: 'pe-customs', sku, quantity: 5, price_cny_fen: 9900, per_user_limit: 2, hold_ttl_s: 300 }, tokens.consulPE), 201);
  await waitFor('the sale active', async () => (await api('GET', `/api/v1/sales/${sale.id}`)).json?.state === 'active');
  const { order } = await paidOrder(tokens.alice, { sale: { id: sale.id } });
  const o = await until('the reason recorded', order.order_id, tokens.alice, (x) => /ebc_code/.test(x.declaration.reason ?? ''));
  assert.equal(o.state, 'paid');
  assert.equal(o.declaration.state, 'queued');
  assert.equal(o.declaration.attempts, 0);
  assert.match(o.declaration.reason, /pavilion PE has no ebc_code and ebc_name/);
  assert.equal(gw.postsFor(order.declaration.guid), 0);
  const q = (await listed('queued', tokens.consulPE)).find((d) => d.order_id === order.order_id);
  assert.ok(q, 'not in the PE consul\'s queued list');
  assert.match(q.reason, /ebc_code/);
  assert.ok(!(await listed('queued', tokens.consul)).some((d) => d.order_id === order.order_id));
  // the XML cannot be written either, and says why
  const x = await api('GET', `/api/v1/orders/${order.order_id}/declaration`, null, tokens.consulPE);
  assert.equal(x.status, 409, show(x));
  assert.match(x.json.error.message, /ebc_code/);
});

test('kill -9 between payment and declaration: the next node declares the order, once', async () => {
  // Only the node about to die may take the job: the first node stops (gracefully) first.
  node.proc.kill('SIGTERM');
  await node.proc.exited;
  gw.mode = 'hang';
  const n2 = await cluster.node({ config });
  const sale = await newSale({ b: n2.base });
  const { order } = await paidOrder(tokens.bob, { sale, b: n2.base });
  const guid = order.declaration.guid;
  await waitFor('the declaration in flight at the gateway', () => gw.postsFor(guid) >= 1, 15000);
  n2.proc.kill('SIGKILL');
  await n2.proc.exited;
  gw.mode = 'accept';
  const n3 = await cluster.node({ config });
  // the dead node's entry is idle after 30 s; the new node takes it over
  const o = await until('declared by the next node', order.order_id, tokens.bob, declared, 90000, n3.base);
  assert.equal(o.declaration.guid, guid);
  assertOncePerOrder([order.order_id]);
  const metrics = await (await fetch(`${n3.base}/metrics`)).text();
  assert.match(metrics, /silklive_outbox_jobs_total\{outbox="declare",result="reclaimed"\} [1-9]/);
  n3.proc.kill('SIGTERM');
  await n3.proc.exited;
});

test('a node without a gateway declares nothing: the order waits, listed, until a node with one takes it', async () => {
  const bare = await cluster.node({ config: config.replace(/^(gateway_url|receipt_secret) = .*\n/gm, '') });
  const sale = await newSale({ b: bare.base });
  const { order } = await paidOrder(tokens.carol, { sale, b: bare.base });
  const guid = order.declaration.guid;
  await new Promise((r) => setTimeout(r, 6000));
  const o = await orderNow(order.order_id, tokens.carol, bare.base);
  assert.equal(o.state, 'paid');
  assert.equal(o.declaration.state, 'queued');
  assert.equal(gw.postsFor(guid), 0);
  const q = (await listed('queued', tokens.consul, bare.base)).find((d) => d.order_id === order.order_id);
  assert.ok(q, 'not in the queued list');
  assert.equal(q.guid, guid);
  const metrics = await (await fetch(`${bare.base}/metrics`)).text();
  assert.match(metrics, /silklive_customs_queue_length [1-9]/);
  // without [customs] receipt_secret no receipt is believed
  const r = await sendReceipt(bare.base, RECEIPT_SECRET, { guid, status: '120' });
  assert.equal(r.status, 403, r.text);
  const n4 = await cluster.node({ config });
  await until('declared by the node with a gateway', order.order_id, tokens.carol, declared, 30000, bare.base);
  assertOncePerOrder([order.order_id]);
  for (const n of [n4, bare]) {
    n.proc.kill('SIGTERM');
    assert.equal(await n.proc.exited, 0);
  }
});

test("no identity number appears in the servers' logs", () => {
  for (const f of readdirSync(cluster.dir).filter((n) => n.endsWith('.log'))) {
    const text = readFileSync(join(cluster.dir, f), 'utf8');
    for (const id of idNumbers) assert.ok(!text.includes(id), `${f} holds an identity number`);
  }
});
