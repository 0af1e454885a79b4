// edge.test: the multi-node deployment on loopback, in a real browser: one Redis, two chat nodes,
// one ingest+transcode node and one commerce node behind nginx with deploy/nginx/edge.conf. An
// encoder publishes to the media node; viewers whose WebSockets land on different chat nodes chat
// and buy, everything through the edge, HLS cached there.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { startCluster, waitFor } from './harness.mjs';

const CHANNEL = 'mx-mole';
let cluster;
let nodes;
let edge;
let browser;
let tokens;
const pages = [];

async function open(path) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  await page.goto(edge + path);
  pages.push(page);
  return page;
}

async function metric(base, series) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(series + ' ') || l.startsWith(series + '{'));
  return line ? Number(line.split(' ').pop()) : 0;
}

before(async () => {
  cluster = await startCluster();
  nodes = {
    commerce: await cluster.node({ modules: 'commerce', config: '[payments]\ndev = true\n' }),
    chat1: await cluster.node({ modules: 'chat' }),
    chat2: await cluster.node({ modules: 'chat' }),
    media: await cluster.node({ modules: 'ingest,transcode', config: '[transcode]\nladder =\n' }),
  };
  edge = await cluster.edge({ web: [nodes.commerce.base], chat: [nodes.chat1.base, nodes.chat2.base], media: [nodes.media.base] });
  tokens = {
    admin: cluster.token('admin', 'ops'),
    consul: cluster.token('consul', 'consul-mx', ['--pavilion', 'MX']),
    ana: cluster.token('viewer', 'ana'),
    luis: cluster.token('viewer', 'luis'),
  };
  const call = (...a) => cluster.call(edge, ...a);
  await call('POST', '/api/v1/pavilions', { code: 'MX', name: { en: 'Mexico', zh: '墨西哥' }, currency: 'MXN', languages: ['es'] }, tokens.admin);
  const ch = await call('POST', '/api/v1/pavilions/MX/channels', { id: CHANNEL, title: { en: 'Mole from Oaxaca' } }, tokens.consul);
  await call('POST', '/api/v1/pavilions/MX/products', { sku: 'mx-mole-1', title: { en: 'Mole negro, 500 g' }, price: { amount_minor: 18000, currency: 'MXN' }, price_cny_fen: 7500, stock_location: 'bonded_sh' }, tokens.consul);
  cluster.publish(nodes.media.rtmpPort, ch.stream_key);
  await waitFor('the channel live through the edge', async () => (await call('GET', `/api/v1/channels/${CHANNEL}`)).live, 30000, 250);
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--autoplay-policy=no-user-gesture-required'] });
});

after(async () => {
  for (const p of pages) assert.deepEqual(p.errors, [], `uncaught errors on ${p.url()}`);
  await browser?.close();
  await cluster?.stop();
});

test('HLS through the edge: playlists cached for a second, segments cached for good', async () => {
  const master = await fetch(`${edge}/hls/${CHANNEL}/master.m3u8`);
  assert.equal(master.status, 200);
  const text = await (await fetch(`${edge}/hls/${CHANNEL}/source/index.m3u8`)).text();
  const seg = text.split('\n').find((l) => l.endsWith('.ts'));
  const first = await fetch(`${edge}/hls/${CHANNEL}/source/${seg}`);
  await first.arrayBuffer();
  const second = await fetch(`${edge}/hls/${CHANNEL}/source/${seg}`);
  await second.arrayBuffer();
  assert.equal(second.headers.get('x-cache-status'), 'HIT');
  assert.match(second.headers.get('cache-control'), /immutable/);
});

test('viewers on two chat nodes chat, and buy, all through the edge', async () => {
  const ana = await open(`/c/${CHANNEL}#token=${tokens.ana}`);
  await ana.waitForFunction(() => document.querySelector('#video').currentTime > 1, null, { timeout: 30000 });
  await ana.waitForFunction(() => document.querySelector('#chat-status').textContent === '');
  const luis = await open(`/c/${CHANNEL}#token=${tokens.luis}`);
  await luis.waitForFunction(() => document.querySelector('#chat-status').textContent === '');
  // no stickiness: nginx spread the two WebSockets over both chat nodes
  const c1 = await metric(nodes.chat1.base, 'silklive_chat_connections');
  const c2 = await metric(nodes.chat2.base, 'silklive_chat_connections');
  assert.ok(c1 >= 1 && c2 >= 1, `connections per chat node: ${c1}, ${c2}`);

  const text = `¡hola desde Oaxaca ${Date.now()}`;
  await ana.fill('#chat-input', text);
  await ana.press('#chat-input', 'Enter');
  await luis.locator('#messages .msg', { hasText: text }).waitFor({ timeout: 10000 });

  const sale = await cluster.call(edge, 'POST', '/api/v1/sales', { channel: CHANNEL, sku: 'mx-mole-1', quantity: 5, price_cny_fen: 5900, per_user_limit: 1, hold_ttl_s: 120 }, tokens.consul);
  const card = luis.locator(`[data-sale="${sale.id}"]`);
  await card.locator('.buy:not([disabled])').waitFor({ timeout: 30000 });
  await card.locator('.buy').click();
  // checkout through the edge: the example buyer, the breakdown, the dev provider's payment
  await luis.locator('#checkout[open] #co-example button').click({ timeout: 10000 });
  await luis.click('#co-continue');
  await luis.locator('#checkout[open] #co-breakdown').waitFor({ timeout: 10000 });
  await luis.click('#dev-pay');
  await luis.locator('#checkout .order-state').waitFor({ timeout: 15000 });
  const order = await luis.locator('#checkout .order-id').innerText({ timeout: 10000 });
  assert.match(order, /^Order \S+/);
  await luis.locator('#checkout button', { hasText: 'Close' }).click();
  // the stock change reached the other chat node's viewer too
  await ana.locator(`[data-sale="${sale.id}"] .stock-text`, { hasText: '4 of 5 left' }).waitFor({ timeout: 10000 });
  const orders = await cluster.call(edge, 'GET', `/api/v1/orders?sale=${sale.id}`, null, tokens.consul);
  assert.equal(orders.orders.length, 1);
  assert.equal(orders.orders[0].order_id, order.replace(/^Order /, ''));
  assert.match(orders.orders[0].buyer.id_number, /^\d{3}\*{11}[\dX]{4}$/);
});

test('a chat node killed with -9: its viewers reconnect to the other through the edge and miss nothing', async () => {
  const [ana, luis] = pages;
  nodes.chat1.proc.kill('SIGKILL');
  // the viewer whose socket was on the dead node notices; the other one stays connected
  const cut = await Promise.any([ana, luis].map(async (p) => {
    await p.waitForFunction(() => document.querySelector('#chat-status').textContent !== '', null, { timeout: 5000 });
    return p;
  }));
  const other = cut === ana ? luis : ana;
  const text = `while you were away ${Date.now()}`;
  await other.fill('#chat-input', text);
  await other.press('#chat-input', 'Enter');
  await other.locator('#messages .msg', { hasText: text }).waitFor({ timeout: 10000 });
  await cut.waitForFunction(() => document.querySelector('#chat-status').textContent === '', null, { timeout: 15000 });
  await cut.locator('#messages .msg', { hasText: text }).waitFor({ timeout: 10000 });
  await cut.waitForTimeout(1000);
  assert.equal(await cut.locator('#messages .msg', { hasText: text }).count(), 1, 'recovered exactly once');
  assert.ok((await metric(nodes.chat2.base, 'silklive_chat_connections')) >= 2, 'both viewers now on the surviving node');
});
