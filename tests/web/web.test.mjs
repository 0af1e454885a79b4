// web.test: the viewer page and the consul console in headless Chromium (Debian's, driven by
// playwright-core) against a real silklive, redis-server and an ffmpeg encoder pushing RTMP.

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

async function liveDoc() {
  return stack.call('GET', `/api/v1/channels/${CHANNEL}`);
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  stack = await startStack({ config: '[transcode]\ngrace_s = 3\n' });
  tokens = {
    admin: stack.token('admin', 'ops'),
    consul: stack.token('consul', 'consul-pe', ['--pavilion', 'PE']),
    alice: stack.token('viewer', 'alice'),
    bob: stack.token('viewer', 'bob'),
    carol: stack.token('viewer', 'carol'),
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
  await alice.locator('#checkout[open] #pay').waitFor({ timeout: 10000 });
  assert.match(await alice.locator('#checkout .dev-pay').innerText(), /Development payment/);
  await alice.locator('#checkout #pay').click();
  const orderId = (await alice.locator('#checkout .order-id').innerText({ timeout: 10000 })).replace(/^Order /, '');
  assert.ok(orderId.length > 0);
  await alice.screenshot({ path: join(SHOTS, 'viewer-checkout.png') });
  await alice.locator('#checkout button', { hasText: 'Close' }).click();

  await consul.locator(`#orders tr[data-order="${orderId}"]`).waitFor({ timeout: 15000 });
  assert.match(await consul.locator(`#orders tr[data-order="${orderId}"]`).innerText(), /alice/);
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
  const r = await stack.call('POST', `/api/v1/sales/${sale.id}/reservations`, { qty: 1 }, tokens.bob, { 'idempotency-key': 'bob-1' });
  await stack.call('POST', `/api/v1/reservations/${r.reservation_id}/confirm`, { payment_ref: 'test' }, tokens.bob);
  await card.locator('.buy').click();
  await card.locator('.sale-msg', { hasText: /Sold out/ }).waitFor({ timeout: 10000 });

  // A buyer who arrives later sees it sold out before trying.
  const dave = await open(`/c/${CHANNEL}`);
  const late = dave.locator(`[data-sale="${sale.id}"][data-state="sold_out"]`);
  await late.waitFor({ timeout: 15000 });
  assert.equal(await late.locator('.buy').isDisabled(), true);
  assert.match(await late.locator('.buy').innerText(), /Sold out/);
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
