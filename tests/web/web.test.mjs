// web.test: the viewer page and the consul console in headless Chromium (Debian's, driven by
// playwright-core) against a real silklive, redis-server and an ffmpeg encoder pushing RTMP.
// Purchases go as a buyer's would: checkout form → the server's breakdown → the development
// payment provider (`[payments] dev = true`) → the order made from its verified notification.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startStack, waitFor } from './harness.mjs';

const SHOTS = process.env.SCREENSHOT_DIR || join(process.cwd(), 'web-screenshots');
const CHANNEL = 'pe-coffee';
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

let stack;
let browser;
let tokens;
let encoder;
const pages = [];

// A fresh browser context (own localStorage) per person.
async function open(path, viewport = DESKTOP, options = {}) {
  const ctx = await browser.newContext({ viewport, ...options });
  const page = await ctx.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  await page.goto(stack.base + path);
  pages.push(page);
  return page;
}

const shot = (page, name) => page.screenshot({ path: join(SHOTS, name), fullPage: true });

async function videoTime(page) {
  return page.evaluate(() => document.querySelector('#video').currentTime);
}

async function waitPlaying(page, seconds = 1, timeout = 30000) {
  await page.waitForFunction((s) => document.querySelector('#video').currentTime > s, seconds, { timeout });
}

// Buyers: real names and GB 11643 identity numbers with valid check characters.
const ALICE = { name: '王爱丽', id: '11010519491231002X', phone: '13800138000', address: '上海市浦东新区世纪大道100号', district: '310115' };
const ERIN = { name: '李依琳', id: '310115199003071239', phone: '13900139000', address: '上海市浦东新区张杨路500号', district: '310115' };
const BOB = { name: '周博', id: '440304198511205615', phone: '13700137000', address: '深圳市福田区深南大道1号', district: '440304' };

// The checkout form, filled as a buyer would (id: null leaves the identity field as it is).
async function fillCheckout(page, who, { id = who.id } = {}) {
  await page.locator('#checkout[open] #co-form').waitFor({ timeout: 10000 });
  await page.fill('[name="buyer.name"]', who.name);
  if (id !== null) await page.fill('[name="buyer.id_number"]', id);
  await page.fill('[name="buyer.phone"]', who.phone);
  await page.locator('#co-form button', { hasText: /Same as the buyer|同订购人/ }).click();
  await page.fill('[name="consignee.address"]', who.address);
  await page.fill('[name="consignee.district"]', who.district);
}

// A purchase over the API, as another buyer's app would make it: hold → payment → the demo
// provider's notification → confirm until the order exists.
async function buyViaApi(tok, saleId, key, who = BOB) {
  const r = await stack.call('POST', `/api/v1/sales/${saleId}/reservations`, { qty: 1 }, tok, { 'idempotency-key': key });
  const pay = await stack.call('POST', `/api/v1/reservations/${r.reservation_id}/payment`, {
    provider: 'dev',
    buyer: { name: who.name, id_type: 'resident_id', id_number: who.id, phone: who.phone },
    consignee: { name: who.name, phone: who.phone, address: who.address, district: who.district },
  }, tok);
  assert.equal(pay.client.kind, 'dev');
  await stack.call('POST', pay.client.complete_url, null, tok);
  return waitFor('the paid order', async () => {
    try {
      return await stack.call('POST', `/api/v1/reservations/${r.reservation_id}/confirm`, { payment_ref: pay.payment_id }, tok);
    } catch (e) {
      if (/: 402 /.test(e.message)) return null;
      throw e;
    }
  }, 10000, 200);
}

async function liveDoc() {
  return stack.call('GET', `/api/v1/channels/${CHANNEL}`);
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  stack = await startStack({ config: '[transcode]\ngrace_s = 3\n[payments]\ndev = true\n' });
  tokens = {
    admin: stack.token('admin', 'ops'),
    consul: stack.token('consul', 'consul-pe', ['--pavilion', 'PE']),
    alice: stack.token('viewer', 'alice'),
    bob: stack.token('viewer', 'bob'),
    carol: stack.token('viewer', 'carol'),
    erin: stack.token('viewer', 'erin'),
    frank: stack.token('viewer', 'frank'),
  };
  await stack.call('POST', '/api/v1/pavilions', { code: 'PE', name: { en: 'Peru', zh: '秘鲁' }, currency: 'PEN', languages: ['es', 'en', 'zh'] }, tokens.admin);
  const ch = await stack.call('POST', '/api/v1/pavilions/PE/channels', { id: CHANNEL, title: { en: 'Andean coffee, live', zh: '安第斯咖啡直播' } }, tokens.consul);
  stack.streamKey = ch.stream_key;
  for (const [sku, en, zh, pen, fen] of [['pe-coffee-1', 'Geisha coffee beans, 250 g', '瑰夏咖啡豆 250克', 6900, 12800], ['pe-cacao-2', 'Cacao nibs, 500 g', '可可碎 500克', 3500, 5900]]) {
    await stack.call('POST', '/api/v1/pavilions/PE/products', { sku, title: { en, zh }, price: { amount_minor: pen, currency: 'PEN' }, price_cny_fen: fen, stock_location: 'bonded_sh', image_url: '/img/icon.svg' }, tokens.consul);
  }
  encoder = stack.publish(stack.streamKey);
  await waitFor('the channel to go live', async () => (await liveDoc()).live, 30000, 250);
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--autoplay-policy=no-user-gesture-required'] });
});

after(async () => {
  for (const p of pages) assert.deepEqual(p.errors, [], `uncaught errors on ${p.url()}`);
  await browser?.close();
  await stack?.stop();
});

test('the directory lists the live channel under its pavilion, in zh and en', async () => {
  const page = await open('/', PHONE);
  const group = page.locator('section.pavilion[data-pavilion="PE"]');
  await group.waitFor({ timeout: 15000 });
  const head = await group.locator('h2').innerText();
  assert.match(head, /秘鲁/);
  assert.match(head, /Peru/);
  await group.locator(`a[href="/c/${CHANNEL}"] .badge.live`).waitFor();
  // the tile shows the channel's poster, a frame of the live picture (640x360 here)
  await page.waitForFunction(() => {
    const img = document.querySelector('img.poster');
    return img && img.complete && img.naturalWidth === 640;
  }, null, { timeout: 20000 });
  await shot(page, 'directory-phone.png');
});

test("the viewer's video plays and the token moves from the URL to storage", async () => {
  const page = await open(`/c/${CHANNEL}#token=${tokens.alice}`);
  assert.equal(new URL(page.url()).hash, '', 'the token is removed from the address bar');
  assert.equal(await page.evaluate(() => localStorage.getItem('silklive.token')), tokens.alice);
  await waitPlaying(page, 1);
  const t1 = await videoTime(page);
  await page.waitForTimeout(3000);
  const t2 = await videoTime(page);
  assert.ok(t2 - t1 > 1.5, `currentTime advances (${t1} → ${t2})`);
  assert.equal(await page.locator('#offline').isVisible(), false);
  await page.locator('#who').filter({ hasText: 'alice' }).waitFor();
  stack.alice = page;
});

test('a chat message sent from one page appears on another', async () => {
  const bob = await open(`/c/${CHANNEL}#token=${tokens.bob}`);
  const anon = await open(`/c/${CHANNEL}`);
  await bob.locator('#chat-input').waitFor();
  assert.equal(await anon.locator('#chat-form').isVisible(), false, 'anonymous viewers read only');
  await anon.locator('#chat-signin').waitFor();
  const text = `hola desde Lima ${Date.now()}`;
  const alice = stack.alice;
  await alice.waitForFunction(() => document.querySelector('#chat-status').textContent === '');
  await bob.waitForFunction(() => document.querySelector('#chat-status').textContent === '');
  await alice.fill('#chat-input', text);
  await alice.press('#chat-input', 'Enter');
  await bob.locator('#messages .msg', { hasText: text }).waitFor({ timeout: 10000 });
  await anon.locator('#messages .msg', { hasText: text }).waitFor({ timeout: 10000 });
  assert.equal(await bob.locator('#messages .msg', { hasText: text }).locator('.name').innerText(), 'alice');
  stack.bob = bob;
});

test('consul starts a sale; the viewer sees the countdown, buys, and the order shows in the console', async () => {
  const consul = await open(`/console#token=${tokens.consul}`, { width: 1280, height: 1000 });
  await consul.locator(`#channels tr[data-channel="${CHANNEL}"]`).waitFor({ timeout: 15000 });
  await consul.locator('#workspace').waitFor({ state: 'visible' });
  await consul.selectOption('#sale-form [name=sku]', 'pe-coffee-1');
  await consul.fill('#sale-form [name=quantity]', '20');
  await consul.fill('#sale-form [name=cny]', '99');
  await consul.fill('#sale-form [name=per_user_limit]', '2');
  await consul.fill('#sale-form [name=starts_in]', '900');
  await consul.click('#sale-form button[type=submit]');
  const row = consul.locator('#sales tr[data-state="scheduled"]');
  await row.waitFor({ timeout: 10000 });
  const saleId = await row.getAttribute('data-sale');

  const alice = stack.alice;
  const card = alice.locator(`[data-sale="${saleId}"]`);
  await card.waitFor({ timeout: 30000 });
  await card.locator('.countdown', { hasText: /Starts in \d+:\d\d/ }).waitFor();
  assert.equal(await card.locator('.buy').isDisabled(), true, 'no buying before the start');

  await consul.locator(`#sales tr[data-sale="${saleId}"] button`, { hasText: 'Start' }).click();
  await alice.locator(`[data-sale="${saleId}"][data-state="active"] .buy:not([disabled])`).waitFor({ timeout: 15000 });
  await alice.locator(`[data-sale="${saleId}"] .buy`).click();
  await fillCheckout(alice, ALICE);
  await alice.click('#co-continue');
  await alice.locator('#checkout[open] #dev-pay').waitFor({ timeout: 10000 });
  assert.match(await alice.locator('#checkout .dev-pay').innerText(), /no money moves/);
  await alice.screenshot({ path: join(SHOTS, 'viewer-checkout.png') });
  await alice.locator('#checkout #dev-pay').click();
  const orderId = (await alice.locator('#checkout .order-id').innerText({ timeout: 15000 })).replace(/^Order /, '');
  assert.ok(orderId.length > 0);
  await alice.locator('#checkout button', { hasText: 'Close' }).click();

  await consul.locator(`#orders tr[data-order="${orderId}"]`).waitFor({ timeout: 15000 });
  assert.match(await consul.locator(`#orders tr[data-order="${orderId}"]`).innerText(), new RegExp(ALICE.name));
  await consul.locator('#kpi-orders', { hasText: '1' }).waitFor();
  const sale = await stack.call('GET', `/api/v1/sales/${saleId}`);
  assert.equal(sale.sold, 1);
  assert.equal(sale.available + sale.held + sale.sold, sale.quantity);
  await consul.waitForTimeout(2500); // a few dashboard samples for the screenshot
  await shot(consul, 'console-desktop.png');
  await shot(alice, 'viewer-desktop.png');
});

test('sold out is shown to a late buyer', async () => {
  const sale = await stack.call('POST', '/api/v1/sales', { channel: CHANNEL, sku: 'pe-cacao-2', quantity: 1, price_cny_fen: 100, per_user_limit: 1, hold_ttl_s: 60 }, tokens.consul);
  const carol = await open(`/c/${CHANNEL}#token=${tokens.carol}`);
  const card = carol.locator(`[data-sale="${sale.id}"]`);
  await card.locator('.buy:not([disabled])').waitFor({ timeout: 30000 });

  // Bob takes the only unit while Carol's page still offers it; her click meets the store.
  await carol.evaluate(() => window.silklive.room?.close());
  await buyViaApi(tokens.bob, sale.id, 'bob-1');
  await card.locator('.buy').click();
  await card.locator('.sale-msg', { hasText: /Sold out/ }).waitFor({ timeout: 10000 });

  // A buyer who arrives later sees it sold out before trying.
  const dave = await open(`/c/${CHANNEL}`);
  const late = dave.locator(`[data-sale="${sale.id}"][data-state="sold_out"]`);
  await late.waitFor({ timeout: 15000 });
  assert.equal(await late.locator('.buy').isDisabled(), true);
  assert.match(await late.locator('.buy').innerText(), /Sold out/);
});

test('checkout: the identity number is checked at once, the tax shows before paying, the demo payment makes the order, my orders lists it', async () => {
  const sale = await stack.call('POST', '/api/v1/sales', { channel: CHANNEL, sku: 'pe-cacao-2', quantity: 10, price_cny_fen: 5900, per_user_limit: 2, hold_ttl_s: 300 }, tokens.consul);
  stack.cacaoSale = sale.id;
  const erin = await open(`/c/${CHANNEL}#token=${tokens.erin}`);
  const card = erin.locator(`[data-sale="${sale.id}"]`);
  await card.locator('.buy:not([disabled])').click({ timeout: 30000 });

  // A demo server offers a made-up buyer in one click.
  await erin.locator('#checkout[open] #co-example button').click({ timeout: 10000 });
  assert.equal(await erin.inputValue('[name="buyer.id_number"]'), '11010519491231002X');
  assert.equal(await erin.inputValue('[name="consignee.district"]'), '310115');

  // A typo in the identity number is said next to the field at once, and nothing is sent.
  await fillCheckout(erin, ERIN, { id: '310115199003071238' });
  const idError = erin.locator('[data-field="buyer.id_number"] .field-error');
  await idError.filter({ hasText: /does not match/ }).waitFor();
  await erin.click('#co-continue');
  assert.equal(await erin.locator('#co-form').isVisible(), true, 'a bad number keeps the form');
  await erin.fill('[name="buyer.id_number"]', '310115199002301234'); // 30 February
  await idError.filter({ hasText: /birth date/ }).waitFor();
  await shot(erin, 'viewer-checkout-form.png');
  await erin.fill('[name="buyer.id_number"]', ERIN.id);
  await idError.waitFor({ state: 'hidden' });
  await erin.click('#co-continue');

  // The server's breakdown before paying: the import tax is 70 % of 13 % VAT on ¥59.00.
  const breakdown = erin.locator('#checkout[open] #co-breakdown');
  await breakdown.waitFor({ timeout: 10000 });
  assert.match(await breakdown.locator('[data-k=goods]').innerText(), /59\.00/);
  assert.match(await breakdown.locator('[data-k=tax]').innerText(), /5\.37/);
  assert.match(await breakdown.locator('[data-k=total]').innerText(), /64\.37/);
  assert.match(await erin.locator('#checkout-countdown').innerText(), /Pay within \d+:\d\d/);
  assert.equal((await stack.call('GET', '/api/v1/me/orders', null, tokens.erin)).orders.length, 0, 'no order before paying');
  await shot(erin, 'viewer-checkout-pay.png');

  await erin.click('#dev-pay');
  const state = erin.locator('#checkout .order-state');
  await state.waitFor({ timeout: 15000 });
  assert.match(await state.innerText(), /^(Paid|Declared to customs)/);
  const orderId = (await erin.locator('#checkout .order-id').innerText()).replace(/^Order /, '');

  // My orders lists it with its state; its details show the identity number masked only.
  await erin.locator('#checkout button', { hasText: 'My orders' }).click();
  const item = erin.locator(`#my-orders-list .order-item[data-order="${orderId}"]`);
  await item.waitFor({ timeout: 10000 });
  assert.match(await item.innerText(), /Cacao nibs/);
  assert.match(await item.locator('.order-state').innerText(), /^(Paid|Declared to customs)/);
  await item.click();
  const detail = erin.locator(`.order-detail[data-order="${orderId}"]`);
  await detail.waitFor({ timeout: 10000 });
  const text = await detail.innerText();
  assert.match(text, /310\*+1239/);
  assert.ok(!text.includes(ERIN.id), 'the identity number is never shown whole');
  await erin.locator('#orders-dialog menu button').click();
  // in Chinese, from the top bar
  await erin.click('#lang');
  await erin.click('#my-orders');
  await erin.locator('#orders-dialog h2', { hasText: '我的订单' }).waitFor();
  await erin.locator(`#my-orders-list .order-item[data-order="${orderId}"] .order-state`, { hasText: /已支付|已向海关申报/ }).waitFor({ timeout: 10000 });
  await shot(erin, 'viewer-my-orders-zh.png');
  await erin.locator('#orders-dialog menu button').click();
  await erin.click('#lang');

  // The next checkout remembers the buyer: the saved identity number shows masked and is used.
  await card.locator('.buy:not([disabled])').click({ timeout: 10000 });
  await erin.locator('#checkout[open] #co-form').waitFor({ timeout: 10000 });
  await erin.waitForFunction((n) => document.querySelector('[name="buyer.name"]').value === n, ERIN.name);
  assert.match(await erin.inputValue('[name="buyer.id_number"]'), /^310\*+1239$/);
  await erin.click('#co-continue');
  await erin.locator('#checkout[open] #dev-pay').waitFor({ timeout: 10000 });
  await erin.locator('#checkout button', { hasText: 'Give it back' }).click();
  await card.locator('.buy:not([disabled])', { hasText: 'Buy now' }).waitFor();
});

// This server has no WeChat Pay merchant account, so the provider's part of the server's answers
// is stubbed in the browser: what is tested is what the page does with them.
async function stubWechatPay(page, { refuseFirst = null } = {}) {
  const asked = [];
  await page.route('**/api/v1/payments/providers', (route) => route.fulfill({ json: { providers: ['wechatpay', 'dev'] } }));
  await page.route('**/api/v1/reservations/*/payment', (route) => {
    const body = route.request().postDataJSON();
    asked.push(body);
    if (refuseFirst && asked.length === 1) return route.fulfill({ status: 400, json: { error: { code: 'bad_request', message: refuseFirst } } });
    const rid = new URL(route.request().url()).pathname.split('/')[4];
    const client = body.scene === 'h5'
      ? { kind: 'wechatpay_h5', h5_url: 'https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=wx-test' }
      : { kind: 'wechatpay_native', code_url: 'weixin://wxpay/bizpayurl?pr=SilkLiveTest' };
    route.fulfill({ status: 201, json: { payment_id: `P${rid}`, reservation_id: rid, provider: 'wechatpay', state: 'pending', amount_cny_fen: 6437,
      breakdown: { goods_cny_fen: 5900, discount_cny_fen: 0, freight_cny_fen: 0, tax_cny_fen: 537 }, expires_at_ms: Date.now() + 120000, client } });
  });
  await page.route('**/api/v1/reservations/*/confirm', (route) => route.fulfill({ status: 402, json: { error: { code: 'payment_required', message: 'not paid yet' } } }));
  return asked;
}

test('WeChat Pay: a QR code to scan on a desktop, the H5 payment page on a phone', async () => {
  const desk = await open(`/c/${CHANNEL}#token=${tokens.frank}`);
  const askedDesk = await stubWechatPay(desk, { refuseFirst: 'consignee.district must be the 6-digit administrative division code' });
  await desk.locator(`[data-sale="${stack.cacaoSale}"] .buy:not([disabled])`).click({ timeout: 30000 });
  await fillCheckout(desk, ERIN);
  await desk.click('#co-continue');
  // a 400 that names a field is said next to that field
  await desk.locator('[data-field="consignee.district"] .field-error', { hasText: /^Must be the 6-digit administrative division code$/ }).waitFor({ timeout: 10000 });
  await desk.click('#co-continue');
  const qr = desk.locator('#checkout[open] canvas#pay-qr');
  await qr.waitFor({ timeout: 10000 });
  assert.equal(askedDesk.length, 2);
  assert.equal(askedDesk[1].provider, 'wechatpay');
  assert.equal(askedDesk[1].scene, 'native');
  assert.deepEqual(askedDesk[1].buyer, { id_type: 'resident_id', name: ERIN.name, id_number: ERIN.id, phone: ERIN.phone });
  assert.equal(await qr.getAttribute('data-qr'), 'weixin://wxpay/bizpayurl?pr=SilkLiveTest');
  const ink = await qr.evaluate((c) => {
    const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let dark = 0;
    for (let i = 0; i < px.length; i += 4) if (px[i] < 128) dark++;
    return dark / (px.length / 4);
  });
  assert.ok(ink > 0.2 && ink < 0.7, `the canvas holds a QR code (${ink} dark)`);
  assert.match(await desk.locator('#checkout .provider').innerText(), /Scan with WeChat/);
  assert.match(await desk.locator('#co-breakdown [data-k=tax]').innerText(), /5\.37/);
  await shot(desk, 'viewer-wechatpay-qr.png');
  await desk.locator('#checkout button', { hasText: 'Give it back' }).click();

  const phone = await open(`/c/${CHANNEL}#token=${tokens.frank}`, PHONE, { isMobile: true, hasTouch: true });
  const askedPhone = await stubWechatPay(phone);
  const buy = phone.locator(`[data-sale="${stack.cacaoSale}"] .buy:not([disabled])`);
  await buy.click({ timeout: 30000 });
  await fillCheckout(phone, ERIN);
  await phone.click('#co-continue');
  const link = phone.locator('#checkout[open] a#h5-pay');
  await link.waitFor({ timeout: 10000 });
  assert.equal(askedPhone[0].scene, 'h5');
  assert.equal(askedPhone[0].buyer.id_number, ERIN.id);
  assert.equal(await link.getAttribute('href'), 'https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=wx-test');
  assert.ok((await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)) <= 0, 'the checkout fits the phone');
  await shot(phone, 'viewer-wechatpay-h5-phone.png');
  await phone.locator('#checkout button', { hasText: 'Give it back' }).click();
});

test("the console's orders panel refunds an order and follows orders live", async () => {
  const consul = await open(`/console#token=${tokens.consul}`, { width: 1280, height: 1000 });
  await consul.locator('#orders-panel').waitFor({ state: 'visible', timeout: 15000 });
  const [erinOrder] = (await stack.call('GET', '/api/v1/me/orders', null, tokens.erin)).orders;
  const erinRow = consul.locator(`#pav-orders tr[data-order="${erinOrder.order_id}"]`);
  await erinRow.waitFor({ timeout: 15000 });
  assert.match(await erinRow.innerText(), new RegExp(ERIN.name));
  assert.match(await erinRow.innerText(), /310\*+1239/, 'the buyer is shown masked');

  // A new order reaches the console as the room's order event, not the 10 s poll.
  await consul.waitForFunction(() => window.silklive.joined, null, { timeout: 15000 });
  const before = await consul.evaluate(() => window.silklive.orderEvents);
  const sale = await stack.call('POST', '/api/v1/sales', { channel: CHANNEL, sku: 'pe-coffee-1', quantity: 5, price_cny_fen: 8800, per_user_limit: 1, hold_ttl_s: 300 }, tokens.consul);
  const order = await buyViaApi(tokens.bob, sale.id, 'bob-live');
  const row = consul.locator(`#pav-orders tr[data-order="${order.order_id}"]`);
  await row.waitFor({ timeout: 5000 });
  assert.ok((await consul.evaluate(() => window.silklive.orderEvents)) > before, 'an order event reached the console');
  assert.match(await row.innerText(), new RegExp(BOB.name));

  // Refund from the console: the row becomes refunded, as the server has it.
  await row.locator('button', { hasText: 'Refund' }).click();
  await row.locator('input[name=reason]').fill('damaged in the bonded warehouse');
  await row.locator('button[type=submit]').click();
  await consul.locator(`#pav-orders tr[data-order="${order.order_id}"][data-state="refunded"]`).waitFor({ timeout: 15000 });
  const doc = await stack.call('GET', `/api/v1/orders/${order.order_id}`, null, tokens.bob);
  assert.equal(doc.state, 'refunded');
  assert.equal(doc.refund.reason, 'damaged in the bonded warehouse');
  // The declarations still queued (this server has no customs gateway) are listed.
  await consul.locator(`#decl-queued tr[data-order="${erinOrder.order_id}"]`).waitFor({ timeout: 15000 });
  await shot(consul, 'console-orders.png');
});

test('a pinned product appears when playback reaches its program-date-time', async () => {
  const alice = stack.alice;
  await waitPlaying(alice, 5);
  await alice.evaluate(() => {
    window.pinSeen = null;
    new MutationObserver(() => {
      const card = document.querySelector('#pin-slot .pinned');
      if (card && !window.pinSeen) window.pinSeen = { at: Date.now(), pdt: Number(card.dataset.pdt), playback: window.silklive.playbackPdt() };
    }).observe(document.querySelector('#pin-slot'), { childList: true, subtree: true });
  });
  const pinnedAt = Date.now();
  await stack.call('POST', `/api/v1/channels/${CHANNEL}/pin`, { sku: 'pe-coffee-1' }, tokens.consul);
  // up to the page's own cap: a card never waits more than 60 s for a lagging player
  const seen = await (await alice.waitForFunction(() => window.pinSeen, null, { timeout: 65000 })).jsonValue();
  assert.ok(seen.pdt > 0, 'the pin event carries pdt_ms');
  assert.ok(seen.playback >= seen.pdt, `shown at playback ${seen.playback}, not before the pin's ${seen.pdt}`);
  // The player runs seconds behind the live edge; shown at once would mean not synchronised.
  assert.ok(seen.at - pinnedAt > 1500, `shown ${seen.at - pinnedAt} ms after the pin`);
  await alice.locator('#pin-slot .pinned', { hasText: 'Geisha' }).waitFor();
});

test('a chat reconnect recovers what was missed with since, once', async () => {
  const alice = stack.alice;
  const bob = stack.bob;
  // Alice's connection drops; Bob speaks while she is away; she comes back on her own.
  await alice.evaluate(() => window.silklive.room.ws.close());
  const text = `mientras tanto ${Date.now()}`;
  await bob.fill('#chat-input', text);
  await bob.press('#chat-input', 'Enter');
  await alice.locator('#messages .msg', { hasText: text }).waitFor({ timeout: 15000 });
  await alice.waitForTimeout(1500);
  assert.equal(await alice.locator('#messages .msg', { hasText: text }).count(), 1, 'recovered exactly once');
});

test('the console creates a channel and a product, rotates the key, and moderates chat', async () => {
  const consul = await open(`/console#token=${tokens.consul}`, { width: 1280, height: 1000 });
  await consul.locator('#channel-form').waitFor();
  await consul.fill('#channel-form [name=id]', 'pe-cacao');
  await consul.fill('#channel-form [name=en]', 'Cacao from Cusco');
  await consul.fill('#channel-form [name=zh]', '库斯科可可');
  await consul.click('#channel-form button[type=submit]');
  await consul.locator('#channels tr[data-channel="pe-cacao"]').waitFor();
  await consul.locator('#ws-title', { hasText: 'pe-cacao' }).waitFor();
  const rtmp = await consul.locator('#rtmp-url').innerText();
  assert.match(rtmp, /^rtmp:\/\/.+\/live$/);
  const key1 = await consul.locator('#stream-key').innerText();
  assert.match(key1, /^sk_[A-Za-z0-9_-]{20,}$/);
  consul.once('dialog', (d) => d.accept());
  await consul.click('#rotate-key');
  await consul.waitForFunction((k) => document.querySelector('#stream-key').textContent !== k, key1);
  const key2 = await consul.locator('#stream-key').innerText();
  const doc = await stack.call('GET', '/api/v1/channels/pe-cacao', null, tokens.consul);
  assert.equal(doc.stream_key, key2, 'the console shows the key the server now holds');

  await consul.fill('#product-form [name=sku]', 'pe-quinoa-3');
  await consul.fill('#product-form [name=en]', 'Red quinoa, 1 kg');
  await consul.fill('#product-form [name=price]', '24.50');
  await consul.fill('#product-form [name=cny]', '45.00');
  await consul.click('#product-form button[type=submit]');
  await consul.locator('#products tr', { hasText: 'pe-quinoa-3' }).waitFor();
  const product = await stack.call('GET', '/api/v1/products/pe-quinoa-3');
  assert.deepEqual(product.price, { amount_minor: 2450, currency: 'PEN' });
  assert.equal(product.price_cny_fen, 4500);

  // Moderation, on the live channel: the consul deletes Bob's message; every viewer sees it go.
  await consul.locator(`#channels tr[data-channel="${CHANNEL}"] button`).click();
  await consul.locator('#ws-title', { hasText: CHANNEL }).waitFor();
  const text = `spam spam ${Date.now()}`;
  await stack.bob.fill('#chat-input', text);
  await stack.bob.press('#chat-input', 'Enter');
  const line = consul.locator('#mod-messages .msg', { hasText: text });
  await line.waitFor({ timeout: 10000 });
  await line.locator('button', { hasText: 'delete' }).click();
  const gone = stack.alice.locator('#messages .msg', { hasText: text });
  await stack.alice.locator('#messages .msg .muted', { hasText: 'message removed' }).last().waitFor({ timeout: 10000 });
  assert.equal(await gone.count(), 0);
});

test('sign-out forgets the token and leaves read-only chat', async () => {
  const page = await open(`/c/${CHANNEL}#token=${tokens.carol}`);
  await page.locator('#signout').click();
  assert.equal(await page.evaluate(() => localStorage.getItem('silklive.token')), null);
  await page.locator('#chat-signin').waitFor();
  assert.equal(await page.locator('#chat-form').isVisible(), false);
  await page.reload();
  await page.locator('#signin').waitFor();
});

test('the pages fit a phone (390×844)', async () => {
  const viewer = await open(`/c/${CHANNEL}#token=${tokens.bob}`, PHONE, { isMobile: true, hasTouch: true });
  await waitPlaying(viewer, 1);
  await viewer.locator('[data-sale]').first().waitFor();
  const overflow = (p) => p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok((await overflow(viewer)) <= 0, 'no sideways scrolling on the viewer page');
  const box = await viewer.locator('#video').boundingBox();
  assert.ok(box.width <= PHONE.width && box.width > 300, `the player fits the width (${box.width})`);
  await shot(viewer, 'viewer-phone.png');
  const consul = await open(`/console#token=${tokens.consul}`, PHONE, { isMobile: true, hasTouch: true });
  await consul.locator('#workspace').waitFor({ state: 'visible', timeout: 15000 });
  assert.ok((await overflow(consul)) <= 0, 'no sideways scrolling on the console');
  await shot(consul, 'console-phone.png');
});

test('the viewer shows offline when the host stops, offers the replay, and resumes by itself', async () => {
  const alice = stack.alice;
  encoder.kill('SIGKILL');
  await alice.locator('#offline').waitFor({ state: 'visible', timeout: 30000 });
  // after the show the product pinned during it has its replay clip, and it plays
  const clip = alice.locator('#highlights figure.clip', { hasText: 'Geisha' });
  await clip.waitFor({ timeout: 60000 });
  await alice.waitForFunction(() => document.querySelector('#clips video').duration > 1, null, { timeout: 15000 });
  await shot(alice, 'viewer-replay.png');
  encoder = stack.publish(stack.streamKey);
  await alice.locator('#offline').waitFor({ state: 'hidden', timeout: 30000 });
  const t1 = await videoTime(alice);
  await alice.waitForFunction((t) => document.querySelector('#video').currentTime > t + 1, t1, { timeout: 30000 });
});
