// console: what a consul runs a pavilion's live commerce with — channels and stream keys,
// products, flash sales, pinning, chat moderation, a live dashboard of viewers, reservations,
// orders and GMV per sale, and the pavilion's orders (refund, ship, delivered) and customs
// declarations.

import uPlot from '/vendor/uPlot.esm.js';
import { api, ApiError, takeFragmentToken, claimsOf, pick, money, cny, el, $, toast, Room } from './common.js';

const TOKEN_KEY = 'silklive.console.token';
const POLL_MS = 2000;
const ORDERS_POLL_MS = 10000;

let token = takeFragmentToken(TOKEN_KEY);
const ui = {
  pavilion: null, // the pavilion document being run
  channels: [],
  products: [],
  channel: null, // the open channel's id
  sales: new Map(),
  saleId: null, // the sale the dashboard and orders follow
  orders: [],
  pavOrders: new Map(), // the pavilion's orders by id
  ordersPoll: null,
  orderEvents: 0, // order events the room delivered (read by the browser tests)
  joined: false,
  room: null,
  poll: null,
  series: { viewers: [[], []], sale: [[], [], [], []] },
  charts: {},
};

const claims = () => (token ? claimsOf(token) : null);

// Every write goes through here: errors become a toast with api.md's message; 401 signs out.
async function call(method, path, body) {
  try {
    return await api(method, path, { body, token });
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    if (e.status === 401) signOut('Your token is invalid or expired. Sign in again.');
    else toast(`${e.code}: ${e.message}`, 'error');
    throw e;
  }
}

function signOut(why) {
  localStorage.removeItem(TOKEN_KEY);
  token = null;
  if (why) toast(why, 'error');
  ui.room?.close();
  clearInterval(ui.poll);
  clearInterval(ui.ordersPoll);
  boot();
}

const fenOf = (yuan) => Math.round(Number(yuan) * 100);

function minorOf(amount, currency) {
  let digits = 2;
  try {
    digits = new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits;
  } catch {
    /* keep two */
  }
  return Math.round(Number(amount) * 10 ** digits);
}

const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : '—');

// ---- pavilion: channels and products ----

async function loadPavilion(code) {
  ui.pavilion = await call('GET', `/api/v1/pavilions/${code}`);
  document.querySelectorAll('.cur').forEach((n) => (n.textContent = ui.pavilion.currency));
  startOrders();
  await Promise.all([loadChannels(), loadProducts()]);
}

async function loadChannels() {
  const { channels } = await call('GET', `/api/v1/pavilions/${ui.pavilion.code}/channels`);
  ui.channels = channels;
  $('#channels tbody').replaceChildren(...channels.map((ch) =>
    el('tr', { dataset: { channel: ch.id } },
      el('td', el('strong', ch.id), el('div.small.muted', pick(ch.title))),
      el('td', ch.live ? el('span.badge.live', 'LIVE') : el('span.muted', 'offline')),
      el('td', String(ch.viewers || 0)),
      el('td', el('button.small', { onclick: () => openChannel(ch.id) }, ui.channel === ch.id ? 'Open ✓' : 'Open')))));
}

async function loadProducts() {
  const { products } = await call('GET', `/api/v1/pavilions/${ui.pavilion.code}/products`);
  ui.products = products;
  $('#products tbody').replaceChildren(...products.map((p) =>
    el('tr', el('td', p.sku), el('td', pick(p.title)), el('td', money(p.price.amount_minor, p.price.currency)), el('td', cny(p.price_cny_fen)))));
  const options = () => products.map((p) => el('option', { value: p.sku }, `${p.sku} — ${pick(p.title)}`));
  $('#pin-sku').replaceChildren(...options());
  $('#sale-form [name=sku]').replaceChildren(...options());
}

function titleOf(form) {
  const title = {};
  if (form.en.value.trim()) title.en = form.en.value.trim();
  if (form.zh.value.trim()) title.zh = form.zh.value.trim();
  return title;
}

function wireForms() {
  $('#channel-form').onsubmit = async (e) => {
    e.preventDefault();
    const f = e.target;
    const ch = await call('POST', `/api/v1/pavilions/${ui.pavilion.code}/channels`, { id: f.id.value.trim(), title: titleOf(f) }).catch(() => null);
    if (!ch) return;
    f.reset();
    toast(`Channel ${ch.id} created`);
    await loadChannels();
    openChannel(ch.id);
  };
  $('#product-form').onsubmit = async (e) => {
    e.preventDefault();
    const f = e.target;
    const body = {
      sku: f.sku.value.trim(),
      title: titleOf(f),
      price: { amount_minor: minorOf(f.price.value, ui.pavilion.currency), currency: ui.pavilion.currency },
      price_cny_fen: fenOf(f.cny.value),
      stock_location: f.stock_location.value,
    };
    if (f.image_url.value.trim()) body.image_url = f.image_url.value.trim();
    if (!(await call('POST', `/api/v1/pavilions/${ui.pavilion.code}/products`, body).catch(() => null))) return;
    f.reset();
    toast(`Product ${body.sku} added`);
    loadProducts();
  };
  $('#sale-form').onsubmit = async (e) => {
    e.preventDefault();
    const f = e.target;
    const now = Date.now();
    const body = {
      channel: ui.channel,
      sku: f.sku.value,
      quantity: Number(f.quantity.value),
      price_cny_fen: fenOf(f.cny.value),
      per_user_limit: Number(f.per_user_limit.value),
      hold_ttl_s: Number(f.hold_ttl_s.value),
    };
    const startsAt = f.starts_in.value ? now + Number(f.starts_in.value) * 1000 : null;
    if (startsAt) body.starts_at_ms = startsAt;
    if (f.lasts.value) body.ends_at_ms = (startsAt || now) + Number(f.lasts.value) * 60000;
    const sale = await call('POST', '/api/v1/sales', body).catch(() => null);
    if (!sale) return;
    toast(`Sale ${sale.id} ${sale.state}`);
    ui.sales.set(sale.id, sale);
    followSale(sale.id);
    loadSales();
  };
  $('#sale-form [name=sku]').onchange = (e) => {
    const p = ui.products.find((x) => x.sku === e.target.value);
    if (p) $('#sale-form [name=cny]').value = (p.price_cny_fen / 100).toFixed(2);
  };
  $('#pin').onclick = async () => {
    const r = await call('POST', `/api/v1/channels/${ui.channel}/pin`, { sku: $('#pin-sku').value }).catch(() => null);
    if (r) $('#pinned-now').textContent = pick(r.pinned?.title) || 'nothing';
  };
  $('#unpin').onclick = async () => {
    if (await call('DELETE', `/api/v1/channels/${ui.channel}/pin`).catch(() => null)) $('#pinned-now').textContent = 'nothing';
  };
  $('#rotate-key').onclick = async () => {
    if (!confirm('Rotate the stream key? An encoder using the old key is disconnected at once.')) return;
    const r = await call('POST', `/api/v1/channels/${ui.channel}/stream-key`).catch(() => null);
    if (!r) return;
    $('#stream-key').textContent = r.stream_key;
    toast('New stream key issued; the old one no longer works');
  };
  $('#copy-key').onclick = () => navigator.clipboard?.writeText($('#stream-key').textContent).then(() => toast('Stream key copied'));
  $('#words-form').onsubmit = async (e) => {
    e.preventDefault();
    const words = $('#words').value.split('\n').map((w) => w.trim()).filter(Boolean);
    if (await call('PUT', `/api/v1/pavilions/${ui.pavilion.code}/banned-words`, { words }).catch(() => null)) toast('Banned words saved');
  };
}

// ---- one channel: stream key, pin, sales, dashboard, moderation ----

async function openChannel(id) {
  ui.channel = id;
  ui.sales.clear();
  ui.saleId = null;
  ui.series = { viewers: [[], []], sale: [[], [], [], []] };
  $('#workspace').hidden = false;
  const ch = await call('GET', `/api/v1/channels/${id}`);
  $('#ws-title').textContent = `${ch.id} — ${pick(ch.title)}`;
  $('#ws-watch').href = `/c/${ch.id}`;
  $('#rtmp-url').textContent = ch.rtmp_url || '';
  $('#stream-key').textContent = ch.stream_key || '(not shown to this role)';
  $('#pinned-now').textContent = ch.pinned ? pick(ch.pinned.title) : 'nothing';
  loadChannels();
  const w = await api('GET', `/api/v1/pavilions/${ui.pavilion.code}/banned-words`, { token }).catch(() => null);
  $('#words').value = w ? w.words.join('\n') : '';
  await loadSales();
  makeCharts();
  openRoom();
  clearInterval(ui.poll);
  ui.poll = setInterval(sample, POLL_MS);
  sample();
  $('#workspace').scrollIntoView({ behavior: 'smooth' });
}

async function loadSales() {
  const r = await call('GET', `/api/v1/channels/${ui.channel}/sales`).catch(() => null);
  if (!r) return;
  for (const s of r.sales) ui.sales.set(s.id, s);
  if (!ui.saleId && r.sales.length) {
    const active = r.sales.find((s) => s.state === 'active') || r.sales[r.sales.length - 1];
    followSale(active.id);
  }
  renderSales();
}

function renderSales() {
  const list = [...ui.sales.values()].sort((a, b) => (b.created_at_ms || 0) - (a.created_at_ms || 0));
  $('#sales tbody').replaceChildren(...list.map((s) =>
    el('tr', { dataset: { sale: s.id, state: s.state }, 'aria-selected': s.id === ui.saleId ? 'true' : 'false' },
      el('td', el('button.link', { onclick: () => followSale(s.id) }, s.id)),
      el('td', s.sku),
      el('td', el('strong', s.state), s.state === 'scheduled' && s.starts_at_ms ? el('div.small.muted', `starts ${time(s.starts_at_ms)}`) : null),
      el('td', `${s.available} / ${s.held} / ${s.sold} / ${s.quantity}`),
      el('td', cny(s.price_cny_fen)),
      el('td.row',
        s.state === 'scheduled' ? el('button.small', { onclick: () => saleAction(s.id, 'start') }, 'Start') : null,
        s.state !== 'ended' ? el('button.ghost.small', { onclick: () => saleAction(s.id, 'stop') }, 'Stop') : null))));
}

async function saleAction(id, action) {
  const s = await call('POST', `/api/v1/sales/${id}/${action}`).catch(() => null);
  if (!s) return;
  ui.sales.set(id, s);
  followSale(id);
  renderSales();
}

function followSale(id) {
  if (ui.saleId === id) return;
  ui.saleId = id;
  ui.series.sale = [[], [], [], []];
  $('#chart-sale-name').textContent = id;
  $('#orders-sale').textContent = id;
  renderSales();
  loadOrders(true);
}

// Orders of the followed sale. On the first load the order stream's own timestamps seed the
// chart, so a console opened mid-sale still shows how orders and GMV grew.
async function loadOrders(seed = false) {
  const id = ui.saleId;
  if (!id) return;
  const r = await api('GET', `/api/v1/orders?sale=${id}`, { token }).catch(() => null);
  if (!r || id !== ui.saleId) return;
  ui.orders = r.orders;
  $('#orders tbody').replaceChildren(...[...r.orders].reverse().slice(0, 200).map((o) =>
    el('tr', { dataset: { order: o.order_id } }, el('td.secret', o.order_id), el('td', o.buyer?.name || o.user || ''), el('td', String(o.qty)), el('td', cny(o.amount_cny_fen)), el('td', time(o.created_at_ms)))));
  const gmv = r.orders.reduce((a, o) => a + o.amount_cny_fen, 0);
  $('#kpi-orders').textContent = String(r.orders.length);
  $('#kpi-gmv').textContent = cny(gmv);
  if (seed) {
    const [xs, held, orders, money] = ui.series.sale;
    let n = 0;
    let sum = 0;
    for (const o of r.orders) {
      sum += o.amount_cny_fen;
      xs.push(o.created_at_ms / 1000);
      held.push(null);
      orders.push(++n);
      money.push(sum / 100);
    }
  }
  return { count: r.orders.length, gmv };
}

// Every POLL_MS: the channel's viewers, the followed sale's counts and its orders → KPIs, charts.
async function sample() {
  const id = ui.channel;
  const now = Date.now() / 1000;
  const ch = await api('GET', `/api/v1/channels/${id}`).catch(() => null);
  if (!ch || id !== ui.channel) return;
  $('#kpi-viewers').textContent = String(ch.viewers || 0);
  ui.series.viewers[0].push(now);
  ui.series.viewers[1].push(ch.viewers || 0);
  if (ui.saleId) {
    const s = await api('GET', `/api/v1/sales/${ui.saleId}`).catch(() => null);
    if (s) {
      ui.sales.set(s.id, s);
      renderSales();
      $('#kpi-held').textContent = String(s.held);
    }
    const o = await loadOrders();
    if (s && o) {
      const [xs, held, orders, money] = ui.series.sale;
      xs.push(now);
      held.push(s.held);
      orders.push(o.count);
      money.push(o.gmv / 100);
    }
  }
  drawCharts();
}

function makeCharts() {
  for (const c of Object.values(ui.charts)) c.destroy();
  const width = () => Math.max(280, $('#chart-viewers').clientWidth || 480);
  ui.charts.viewers = new uPlot({
    width: width(), height: 200,
    series: [{}, { label: 'Viewers', stroke: '#c8102e', width: 2 }],
    axes: [{}, {}],
  }, ui.series.viewers, $('#chart-viewers'));
  ui.charts.sale = new uPlot({
    width: width(), height: 200,
    series: [{}, { label: 'Held', stroke: '#d4a017', width: 2, spanGaps: true }, { label: 'Orders', stroke: '#1a7f37', width: 2 },
      { label: 'GMV ¥', stroke: '#3b5bdb', width: 2, scale: 'cny' }],
    axes: [{}, {}, { scale: 'cny', side: 1, grid: { show: false } }],
  }, ui.series.sale, $('#chart-sale'));
  window.onresize = () => {
    for (const c of Object.values(ui.charts)) c.setSize({ width: width(), height: 200 });
  };
}

function drawCharts() {
  ui.charts.viewers?.setData(ui.series.viewers);
  ui.charts.sale?.setData(ui.series.sale);
}

// ---- the pavilion's orders and customs declarations ----
//
// Every order of the pavilion, newest first, with what the consul does to them: refund, ship,
// mark delivered. The room's order events (sent to the pavilion's staff) update a row in place;
// a poll every ORDERS_POLL_MS is the safety net for a missed event or a console with no room.

const ORDER_STATE = {
  paid: 'Paid', declared: 'Declared', shipped: 'Shipped', delivered: 'Delivered',
  declaration_rejected: 'Declaration rejected', refunded: 'Refunded',
};
const DECL_STATE = { queued: 'queued', delivered: 'with customs', declared: 'declared (入库)', rejected: 'rejected (退单)' };

const mayOrders = () => ['consul', 'admin'].includes(claims()?.role);

async function loadPavOrders() {
  const code = ui.pavilion?.code;
  if (!code || !mayOrders()) return;
  let r;
  try {
    r = await api('GET', `/api/v1/pavilions/${code}/orders`, { token });
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    if (e.status === 401) signOut('Your token is invalid or expired. Sign in again.');
    return;
  }
  if (code !== ui.pavilion?.code) return;
  const fresh = new Map();
  for (const o of Array.isArray(r) ? r : r.orders || []) {
    const known = ui.pavOrders.get(o.order_id);
    // an event may have brought a newer version than this answer
    fresh.set(o.order_id, known && (known.updated_at_ms || 0) > (o.updated_at_ms || 0) ? known : o);
  }
  for (const [id, o] of ui.pavOrders) if (!fresh.has(id) && o.pavilion === code) fresh.set(id, o);
  ui.pavOrders = fresh;
  renderPavOrders();
}

// An order from an event or an action's answer: into the list, the row redrawn in place.
function upsertOrder(o) {
  if (!o?.order_id) return;
  if (o.pavilion && ui.pavilion && o.pavilion !== ui.pavilion.code) return;
  const known = ui.pavOrders.get(o.order_id);
  if (known && (known.updated_at_ms || 0) > (o.updated_at_ms || 0)) return;
  ui.pavOrders.set(o.order_id, o);
  renderPavOrders();
}

function orderStateCell(o) {
  return el('td',
    el('span.order-state', { dataset: { state: o.state } }, ORDER_STATE[o.state] || o.state),
    o.refund ? el('div.small.muted.refund-line', `refund ${o.refund.state}${o.refund.reason ? ' — ' + o.refund.reason : ''}`) : null,
    o.shipment ? el('div.small.muted', `${o.shipment.carrier || ''} ${o.shipment.waybill || ''}`.trim()) : null);
}

function customsCell(o) {
  const d = o.declaration;
  if (!d) return el('td', '—');
  return el('td', { dataset: { decl: d.state } },
    el('span', DECL_STATE[d.state] || d.state),
    d.attempts > 1 ? el('span.small.muted', ` · ${d.attempts} tries`) : null,
    d.reason ? el(d.state === 'rejected' ? 'div.small.decl-reason' : 'div.small.muted', d.reason) : null);
}

// The actions cell: the buttons, or one inline form in their place.
function orderActions(o) {
  const cell = el('td.order-actions');
  const buttons = () => {
    const b = [];
    // Goods leave the bonded warehouse once customs cleared them (declared); a refund the
    // provider has not confirmed may be asked for again (the server keeps it idempotent).
    if (o.state === 'declared') b.push(el('button.small', { type: 'button', onclick: () => inline('ship') }, 'Ship'));
    if (o.state === 'shipped') {
      b.push(el('button.small', { type: 'button', onclick: () => act('delivered') }, 'Delivered'));
      b.push(el('button.ghost.small', { type: 'button', onclick: () => inline('ship') }, 'Waybill'));
    }
    if (o.state !== 'refunded' && o.refund?.state !== 'done') {
      b.push(el('button.ghost.small', { type: 'button', onclick: () => inline('refund') }, o.refund?.state === 'pending' || o.refund?.state === 'failed' ? 'Retry refund' : 'Refund'));
    }
    cell.replaceChildren(el('div.row', b));
  };
  const act = async (what, body) => {
    const path = { refund: 'refund', ship: 'shipment', delivered: 'delivered' }[what];
    const r = await call('POST', `/api/v1/orders/${o.order_id}/${path}`, body).catch(() => null);
    if (!r) return false;
    toast(`${o.order_id}: ${what === 'refund' ? 'refund requested' : what === 'ship' ? 'shipped' : 'delivered'}`);
    upsertOrder(r.order_id ? r : { ...o, ...r });
    return true;
  };
  const inline = (what) => {
    const inputs = what === 'ship'
      ? [el('input', { name: 'carrier', placeholder: 'Carrier (e.g. SF Express)', required: true, maxLength: 64, value: o.shipment?.carrier || '' }),
        el('input', { name: 'waybill', placeholder: 'Waybill no.', required: true, pattern: '[A-Za-z0-9-]{4,40}', title: '4 to 40 letters, digits or -', maxLength: 40, value: o.shipment?.waybill || '' })]
      : [el('input', { name: 'reason', placeholder: 'Reason (shown to the buyer)', required: true, maxLength: 80 })];
    const go = el('button.small', { type: 'submit' }, what === 'ship' ? 'Save shipment' : `Refund ${cny(o.amount_cny_fen)}`);
    const form = el('form.inline-form', { dataset: { action: what } }, inputs, go,
      el('button.ghost.small', { type: 'button', onclick: buttons }, 'Cancel'));
    form.onsubmit = async (e) => {
      e.preventDefault();
      go.disabled = true;
      const body = Object.fromEntries(inputs.map((i) => [i.name, i.value.trim()]));
      if (!(await act(what, body))) go.disabled = false;
    };
    cell.replaceChildren(form);
    inputs[0].focus();
  };
  buttons();
  return cell;
}

function orderRow(o) {
  const b = o.breakdown || {};
  return el('tr', { dataset: { order: o.order_id, state: o.state, updated: o.updated_at_ms || 0 } },
    el('td', el('div.secret', o.order_id), el('div.small.muted', `${time(o.created_at_ms)} · ${o.provider || ''}`)),
    el('td', o.sku, el('div.small.muted', `× ${o.qty}${o.channel ? ' · ' + o.channel : ''}`)),
    el('td', el('strong', cny(o.amount_cny_fen)), b.tax_cny_fen !== undefined ? el('div.small.muted', `tax ${cny(b.tax_cny_fen)} · freight ${cny(b.freight_cny_fen || 0)}`) : null),
    el('td', o.buyer?.name || '—', el('div.small.muted.secret', o.buyer?.id_number || o.buyer?.id_masked || '')),
    orderStateCell(o),
    customsCell(o),
    orderActions(o));
}

function renderPavOrders() {
  const filter = $('#pav-orders-filter').value;
  const all = [...ui.pavOrders.values()].sort((a, b) => (b.created_at_ms || 0) - (a.created_at_ms || 0));
  const list = filter ? all.filter((o) => o.state === filter) : all;
  const tbody = $('#pav-orders tbody');
  const rows = new Map([...tbody.children].map((tr) => [tr.dataset.order, tr]));
  // Rows whose order did not change stay as they are (an open refund or shipment form too).
  const next = list.slice(0, 500).map((o) => {
    const tr = rows.get(o.order_id);
    return tr && tr.dataset.state === o.state && Number(tr.dataset.updated) === (o.updated_at_ms || 0) ? tr : orderRow(o);
  });
  if (next.length !== tbody.children.length || next.some((tr, i) => tbody.children[i] !== tr)) tbody.replaceChildren(...next);
  const paid = all.filter((o) => o.state !== 'refunded');
  $('#pav-orders-count').textContent = `${all.length} · ${cny(paid.reduce((a, o) => a + (o.amount_cny_fen || 0), 0))} not refunded`;
}

async function loadDeclarations() {
  if (!ui.pavilion || !mayOrders()) return;
  for (const st of ['queued', 'rejected']) {
    const r = await api('GET', `/api/v1/customs/declarations?state=${st}`, { token }).catch(() => null);
    if (!r) continue;
    const list = (Array.isArray(r) ? r : r.declarations || r.orders || []).map((d) => ({
      order: d.order_id || (typeof d.order === 'string' ? d.order : d.order?.order_id) || '',
      pavilion: d.pavilion,
      ...(d.declaration || d),
    })).filter((d) => !d.pavilion || d.pavilion === ui.pavilion.code);
    $(`#decl-${st}-count`).textContent = String(list.length);
    $(`#decl-${st} tbody`).replaceChildren(...list.map((d) => el('tr', { dataset: { order: d.order, guid: d.guid || '' } },
      el('td.secret', d.order),
      el('td', el('div.secret', d.guid || ''), d.state && d.state !== st ? el('div.small.muted', DECL_STATE[d.state] || d.state) : null),
      st === 'queued' ? el('td', String(d.attempts ?? 0)) : el('td.decl-reason', d.reason || '—'),
      el('td', time(d.updated_at_ms || d.created_at_ms)))));
  }
}

function startOrders() {
  $('#orders-panel').hidden = !mayOrders();
  $('#declarations-panel').hidden = !mayOrders();
  clearInterval(ui.ordersPoll);
  ui.pavOrders = new Map();
  $('#pav-orders tbody').replaceChildren();
  if (!mayOrders()) return;
  loadPavOrders();
  loadDeclarations();
  ui.ordersPoll = setInterval(() => {
    loadPavOrders();
    loadDeclarations();
  }, ORDERS_POLL_MS);
}

// ---- moderation over the room ----

function modLine(ev) {
  const user = ev.user || {};
  const act = (action, extra = {}) => call('POST', `/api/v1/channels/${ui.channel}/moderation`, { action, user: user.id, ...extra })
    .then(() => toast(`${action}: ${user.name || user.id}`)).catch(() => {});
  return el('li.msg', { dataset: { id: ev.id } },
    el('span.name', user.name || user.id), ' ', el('span.text', ev.text),
    el('span.mod-actions',
      el('button.ghost', { title: 'Delete message', onclick: () => act('delete', { message_id: ev.id }) }, 'delete'),
      el('button.ghost', { title: 'Mute for 10 minutes', onclick: () => act('mute', { duration_s: 600 }) }, 'mute'),
      el('button.ghost', { title: 'Ban from this channel', onclick: () => act('ban') }, 'ban')));
}

function modEvent(ev) {
  const box = $('#mod-messages');
  if (ev.type === 'chat') {
    box.append(modLine(ev));
    while (box.children.length > 200) box.firstChild.remove();
    box.scrollTop = box.scrollHeight;
  } else if (ev.type === 'moderation' && ev.action === 'delete') {
    const li = box.querySelector(`[data-id="${CSS.escape(ev.message_id)}"]`);
    if (li) li.replaceChildren(el('span.muted', 'message removed'));
  } else if (ev.type === 'sale') {
    ui.sales.set(ev.sale.id, ev.sale);
    renderSales();
    if (ev.sale.id === ui.saleId) {
      $('#kpi-held').textContent = String(ev.sale.held);
      if (ev.event === 'stock' || ev.event === 'sold_out') loadOrders();
    }
  } else if (ev.type === 'order') {
    ui.orderEvents++;
    upsertOrder(ev.order);
    if (ev.order?.sale === ui.saleId) loadOrders();
  } else if (ev.type === 'presence') {
    $('#kpi-viewers').textContent = String(ev.viewers);
  } else if (ev.type === 'stream') {
    loadChannels();
  }
}

function openRoom() {
  ui.room?.close();
  ui.joined = false;
  $('#mod-messages').replaceChildren();
  ui.room = new Room(ui.channel, {
    onJoined: (msg, { resumed }) => {
      ui.joined = true;
      if (!resumed) $('#mod-messages').replaceChildren();
      for (const ev of msg.history || []) modEvent(ev);
    },
    onEvent: modEvent,
    onError: (msg) => toast(`chat: ${msg.message || msg.code}`, 'error'),
  }, token);
  ui.room.open();
}

// ---- boot ----

async function boot() {
  const c = claims();
  $('#signin').hidden = !!c;
  $('#app').hidden = !c;
  $('#signout').hidden = !c;
  $('#who').textContent = c ? `${c.name || c.sub} · ${c.role}${c.pav ? ' · ' + c.pav : ''}` : '';
  if (!c) return;
  if (c.role !== 'consul' && c.role !== 'admin' && c.role !== 'host') {
    $('#app').replaceChildren(el('p.panel', 'This console is for consuls, hosts and admins. Your token is a ' + c.role + ' token.'));
    return;
  }
  let code = c.pav;
  if (c.role === 'admin') {
    const { pavilions } = await call('GET', '/api/v1/pavilions');
    const pick_ = $('#pavilion-pick');
    pick_.hidden = false;
    pick_.replaceChildren(...pavilions.map((p) => el('option', { value: p.code }, `${p.code} ${pick(p.name)}`)));
    code = pavilions[0]?.code;
    pick_.onchange = () => loadPavilion(pick_.value);
    if (!code) return;
  }
  await loadPavilion(code);
  const wanted = new URLSearchParams(location.search).get('channel');
  const first = ui.channels.find((ch) => ch.id === wanted) || ui.channels.find((ch) => ch.live) || ui.channels[0];
  if (first) openChannel(first.id);
}

$('#signin-form').onsubmit = (e) => {
  e.preventDefault();
  const v = $('#signin-token').value.trim();
  if (!claimsOf(v)) return toast('That is not a token.', 'error');
  localStorage.setItem(TOKEN_KEY, v);
  token = v;
  boot();
};
$('#signout').onclick = () => signOut();
$('#pav-orders-filter').onchange = renderPavOrders;
$('#pav-orders-refresh').onclick = loadPavOrders;
$('#decl-refresh').onclick = loadDeclarations;
// What the browser tests (and anyone debugging in devtools) read.
window.silklive = {
  get room() {
    return ui.room;
  },
  get joined() {
    return ui.joined;
  },
  get orderEvents() {
    return ui.orderEvents;
  },
};
wireForms();
boot();
