// viewer: the directory of live pavilions (/) and a channel's live room (/c/{channel}) — the
// player, chat, the pinned product and flash sales with checkout, shown in step with the video.

import Hls from '/vendor/hls.min.mjs';
import { api, ApiError, takeFragmentToken, claimsOf, pick, money, cny, duration, randomKey, el, $, toast, Room, lang } from './common.js';
import { currentProvider } from './payment.js';

const TOKEN_KEY = 'silklive.token';

const TEXT = {
  en: {
    live_now: 'Live now', nobody_live: 'No pavilion is live right now.', other_channels: 'Other channels',
    offline: 'Offline', offline_hint: 'The host is not live. This page resumes by itself.',
    replays: 'Product replays', chat: 'Chat', send: 'Send', signin: 'Sign in', signout: 'Sign out',
    signin_to_chat: 'Sign in to chat and buy.', signin_hint: 'Paste the sign-in token your account gave you.',
    cancel: 'Cancel', viewers: (n) => `${n} watching`, live: 'LIVE', starts_in: (t) => `Starts in ${t}`,
    ends_in: (t) => `Ends in ${t}`, on_now: 'On now', ended: 'Sale ended', sold_out: 'Sold out',
    left: (n, q) => `${n} of ${q} left`, buy: 'Buy now', flash: 'Flash sale', pinned: 'On screen',
    limit: (n) => `Limit ${n} per buyer`, reserving: 'Reserving…', reserved: 'Reserved for you',
    pay_within: (t) => `Pay within ${t}`, pay: (a) => `Pay ${a}`, paying: 'Paying…',
    order_done: 'Order placed', order_no: (id) => `Order ${id}`, release: 'Give it back', close: 'Close',
    err_sold_out: 'Sold out — every unit has been taken.',
    err_limit: 'You already hold or bought the most this sale allows per buyer.',
    err_quota: 'This would pass your annual cross-border shopping quota.',
    err_not_active: 'The sale is not on right now.',
    err_expired: 'Your hold expired and the units went back on sale. Try again while stock lasts.',
    err_busy: 'The shop is busy. Please try again in a moment.',
    err_network: 'No connection. Check your network and try again.',
    err_signin: 'Sign in to buy.', retry: 'Try again', connecting: 'connecting…', reconnecting: 'reconnecting…',
    muted: 'You are muted in this chat.', banned: 'You were removed from this chat.',
    rate_limited: (s) => `Slow down — you can send again in ${s} s.`, deleted: 'message removed',
    pinned_line: (t) => `On screen now: ${t}`, sale_line: (t) => `Flash sale: ${t}`, say: 'Say something…',
    session_expired: 'Your sign-in expired. Sign in again.', origin: 'origin price', dev_pay: 'test mode',
    bonded_sh: 'Ships from the Shanghai bonded warehouse', overseas: 'Ships from overseas',
    direct_mail: 'Direct mail from origin', replay_of: (t) => `Replay: ${t}`, no_channel: 'No such channel.', host_reconnecting: 'Waiting for the host…',
  },
  zh: {
    live_now: '正在直播', nobody_live: '目前没有国家馆在直播。', other_channels: '其他频道',
    offline: '未开播', offline_hint: '主播当前不在直播，开播后页面会自动恢复。',
    replays: '商品回放', chat: '聊天', send: '发送', signin: '登录', signout: '退出登录',
    signin_to_chat: '登录后即可聊天和购买。', signin_hint: '请粘贴您账户提供的登录令牌。',
    cancel: '取消', viewers: (n) => `${n} 人观看`, live: '直播中', starts_in: (t) => `${t} 后开抢`,
    ends_in: (t) => `${t} 后结束`, on_now: '抢购中', ended: '活动已结束', sold_out: '已售罄',
    left: (n, q) => `剩余 ${n} / ${q}`, buy: '立即抢购', flash: '限时秒杀', pinned: '正在讲解',
    limit: (n) => `每人限购 ${n} 件`, reserving: '正在锁定…', reserved: '已为您锁定',
    pay_within: (t) => `请在 ${t} 内付款`, pay: (a) => `支付 ${a}`, paying: '支付中…',
    order_done: '下单成功', order_no: (id) => `订单 ${id}`, release: '放弃', close: '关闭',
    err_sold_out: '已售罄，所有商品都已被抢完。', err_limit: '您已达到本次活动的每人限购数量。',
    err_quota: '超出您的跨境电商年度个人额度。', err_not_active: '活动当前未进行。',
    err_expired: '锁定已过期，商品已重新开放购买。', err_busy: '系统繁忙，请稍后再试。',
    err_network: '网络连接失败，请检查网络后重试。', err_signin: '请先登录再购买。', retry: '重试',
    connecting: '连接中…', reconnecting: '重新连接中…', muted: '您已被禁言。', banned: '您已被移出本聊天室。',
    rate_limited: (s) => `发送太快了，请 ${s} 秒后再试。`, deleted: '消息已删除',
    pinned_line: (t) => `正在讲解：${t}`, sale_line: (t) => `限时秒杀：${t}`, say: '说点什么…',
    session_expired: '登录已过期，请重新登录。', origin: '原产地价格', dev_pay: '测试模式',
    bonded_sh: '上海保税仓发货', overseas: '海外直邮仓发货', direct_mail: '原产地直邮',
    replay_of: (t) => `回放：${t}`, no_channel: '频道不存在。', host_reconnecting: '等待主播重新连接…',
  },
};

const t = (key, ...args) => {
  const v = TEXT[lang()][key] ?? TEXT.en[key] ?? key;
  return typeof v === 'function' ? v(...args) : v;
};

function applyText() {
  document.documentElement.lang = lang() === 'zh' ? 'zh-CN' : 'en';
  for (const n of document.querySelectorAll('[data-t]')) n.textContent = t(n.dataset.t);
  $('#lang').textContent = lang() === 'zh' ? 'EN' : '中文';
  const input = $('#chat-input');
  if (input) input.placeholder = t('say');
}

// ---- sign-in ----

let token = takeFragmentToken(TOKEN_KEY);
const listeners = [];

function me() {
  return token ? claimsOf(token) : null;
}

function renderWho() {
  const c = me();
  $('#who').textContent = c ? c.name || c.sub : '';
  $('#signin').hidden = !!c;
  $('#signout').hidden = !c;
  $('#chat-form') && ($('#chat-form').hidden = !c);
  $('#chat-signin') && ($('#chat-signin').hidden = !!c);
}

function setToken(tok) {
  token = tok;
  if (tok) localStorage.setItem(TOKEN_KEY, tok);
  else localStorage.removeItem(TOKEN_KEY);
  renderWho();
  for (const fn of listeners) fn(tok);
}

function wireSignIn() {
  $('#signin').onclick = () => $('#signin-dialog').showModal();
  $('#signout').onclick = () => setToken(null);
  $('#signin-dialog').addEventListener('close', () => {
    const v = $('#token-input').value.trim();
    $('#token-input').value = '';
    if ($('#signin-dialog').returnValue !== 'ok' || !v) return;
    if (!claimsOf(v)) return toast('That is not a sign-in token.', 'error');
    setToken(v);
  });
  $('#lang').onclick = () => {
    localStorage.setItem('silklive.lang', lang() === 'zh' ? 'en' : 'zh');
    applyText();
    rerender();
  };
  renderWho();
}

let rerender = () => {};

// ---- directory (/) ----

function posterOf(ch) {
  const img = el('img.poster', { alt: '', loading: 'lazy', src: `/hls/${encodeURIComponent(ch.id)}/poster.jpg?t=${Math.floor(Date.now() / 10000)}` });
  img.onerror = () => img.replaceWith(el('div.poster.placeholder', ch.pavilion || ''));
  return img;
}

function channelTile(ch) {
  return el('a.tile', { href: `/c/${encodeURIComponent(ch.id)}` },
    el('div.tile-media', posterOf(ch), ch.live ? el('span.badge.live', t('live')) : null,
      ch.live ? el('span.badge.viewers', t('viewers', ch.viewers || 0)) : null),
    el('div.tile-title', pick(ch.title)));
}

async function loadDirectory() {
  try {
    const [{ pavilions }, { channels }] = await Promise.all([api('GET', '/api/v1/pavilions'), api('GET', '/api/v1/channels')]);
    const byCode = new Map(pavilions.map((p) => [p.code, p]));
    const live = channels.filter((c) => c.live).sort((a, b) => (b.viewers || 0) - (a.viewers || 0));
    const groups = new Map();
    for (const ch of live) {
      if (!groups.has(ch.pavilion)) groups.set(ch.pavilion, []);
      groups.get(ch.pavilion).push(ch);
    }
    const box = $('#pavilions');
    box.replaceChildren(...[...groups].map(([code, list]) => {
      const p = byCode.get(code) || { code, name: {} };
      return el('section.pavilion', { dataset: { pavilion: code } },
        el('h2', el('span.flag', code), ` ${p.name.zh || ''} · ${p.name.en || code}`),
        el('div.grid', list.map(channelTile)));
    }));
    $('#dir-empty').hidden = live.length > 0;
    const rest = channels.filter((c) => !c.live);
    $('#offline-head').hidden = rest.length === 0;
    $('#offline-channels').replaceChildren(...rest.map(channelTile));
  } catch (e) {
    toast(e.message, 'error');
  }
}

function bootDirectory() {
  $('#directory').hidden = false;
  loadDirectory();
  setInterval(loadDirectory, 10000);
  rerender = loadDirectory;
}

// ---- the room (/c/{channel}) ----

const state = {
  channel: null,
  doc: null,
  product: new Map(), // sku → product document
  sales: new Map(), // sale id → latest sale document
  shown: new Set(), // sales whose card is up (their first event has reached the video)
  pinned: null,
  pending: [], // video-synchronised events waiting for playback to reach their pdt_ms
  clockSkew: 0, // server ms - local ms, from event timestamps
  holds: new Map(), // sale id → reservation this page holds
};

// ---- player ----

const player = { hls: null, live: false, retry: null };

function showOffline(off) {
  $('#offline').hidden = !off;
  $('#live-badge').hidden = off;
}

function stopPlayer() {
  clearTimeout(player.retry);
  if (player.hls) player.hls.destroy();
  player.hls = null;
  const v = $('#video');
  v.removeAttribute('src');
  v.load();
}

function startPlayer() {
  stopPlayer();
  const url = `/hls/${encodeURIComponent(state.channel)}/master.m3u8`;
  const v = $('#video');
  showOffline(false);
  if (Hls.isSupported()) {
    const hls = new Hls({ liveSyncDurationCount: 3, manifestLoadingMaxRetry: 4, levelLoadingMaxRetry: 4, fragLoadingMaxRetry: 4 });
    player.hls = hls;
    hls.on(Hls.Events.ERROR, (_e, data) => {
      if (!data.fatal) return;
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
        return;
      }
      // The stream went away or the network failed: try again while the channel is live.
      stopPlayer();
      showOffline(true);
      player.retry = setTimeout(refreshChannel, 3000);
    });
    hls.loadSource(url);
    hls.attachMedia(v);
  } else if (v.canPlayType('application/vnd.apple.mpegurl')) {
    v.src = url; // Safari and iOS play HLS themselves
  }
  v.play().catch(() => {});
}

function setLive(live) {
  if (live === player.live && (player.hls || !live)) return;
  player.live = live;
  if (live) startPlayer();
  else {
    stopPlayer();
    showOffline(true);
    loadHighlights(); // the show's replays, should their room event have been missed
  }
}

// The program-date-time the viewer is watching now, or null when nothing is playing.
function playbackPdt() {
  const v = $('#video');
  if (v.paused || v.readyState < 2) return null;
  if (player.hls && player.hls.playingDate) return player.hls.playingDate.getTime();
  if (v.getStartDate) {
    const d = v.getStartDate().getTime();
    if (!Number.isNaN(d)) return d + v.currentTime * 1000;
  }
  return null;
}

// Events with pdt_ms wait until playback reaches them; with nothing playing they apply at once.
// Order is kept: a later event never overtakes an earlier one.
function schedule(ev) {
  if (ev.pdt_ms && (state.pending.length || playbackPdt() !== null)) state.pending.push({ ev, at: Date.now() });
  else applySynced(ev);
}

function releaseDue() {
  const pdt = playbackPdt();
  while (state.pending.length) {
    const { ev, at } = state.pending[0];
    // A stalled or paused player must not hide the shop forever: a minute is the most we wait.
    if (pdt !== null && ev.pdt_ms > pdt && Date.now() - at < 60000) break;
    state.pending.shift();
    applySynced(ev);
  }
}

function applySynced(ev) {
  if (ev.type === 'pin') {
    state.pinned = ev.product;
    state.pinnedPdt = ev.pdt_ms;
    cacheProduct(ev.product);
    renderPinned();
    systemLine(t('pinned_line', pick(ev.product.title)));
  } else if (ev.type === 'unpin') {
    state.pinned = null;
    renderPinned();
  } else if (ev.type === 'sale') {
    if (!state.shown.has(ev.sale.id) && ev.event !== 'stock') systemLine(t('sale_line', pick(state.product.get(ev.sale.sku)?.title) || ev.sale.sku));
    state.shown.add(ev.sale.id);
    renderSales();
  }
}

// ---- products, pinned card ----

function cacheProduct(p) {
  if (p && p.sku) state.product.set(p.sku, p);
}

async function product(sku) {
  if (!state.product.has(sku)) {
    try {
      cacheProduct(await api('GET', `/api/v1/products/${encodeURIComponent(sku)}`));
    } catch {
      return null;
    }
  }
  return state.product.get(sku);
}

function productImage(p) {
  if (p && p.image_url) return el('img.product-img', { src: p.image_url, alt: '' });
  return el('div.product-img.placeholder', (p?.sku || '?').slice(0, 2).toUpperCase());
}

function priceBlock(p, saleFen) {
  return el('div.prices',
    el('span.price', cny(saleFen ?? p.price_cny_fen)),
    saleFen !== undefined && saleFen < p.price_cny_fen ? el('s.muted', cny(p.price_cny_fen)) : null,
    p.price ? el('span.origin.muted', { title: t('origin') }, money(p.price.amount_minor, p.price.currency)) : null);
}

function renderPinned() {
  const slot = $('#pin-slot');
  const p = state.pinned;
  if (!p) return slot.replaceChildren();
  const sale = [...state.sales.values()].find((s) => s.sku === p.sku && s.state === 'active' && state.shown.has(s.id));
  slot.replaceChildren(el('div.card.pinned', { dataset: { sku: p.sku, pdt: state.pinnedPdt || '' } },
    productImage(p),
    el('div.card-body',
      el('span.kicker', t('pinned')),
      el('div.product-title', pick(p.title)),
      el('div.product-sub.muted', pick(p.title, lang() === 'zh' ? 'en' : 'zh')),
      priceBlock(p, sale ? sale.price_cny_fen : undefined),
      p.stock_location ? el('div.small.muted', t(p.stock_location)) : null,
      sale ? el('button.small', { onclick: () => document.querySelector(`[data-sale="${sale.id}"]`)?.scrollIntoView({ behavior: 'smooth', block: 'center' }) }, t('buy')) : null)));
}

// ---- flash sales ----

const serverNow = () => Date.now() + state.clockSkew;

function saleStatus(s) {
  if (s.state === 'ended') return s.sold >= s.quantity ? t('sold_out') : t('ended');
  if (s.state === 'scheduled') return s.starts_at_ms ? t('starts_in', duration(s.starts_at_ms - serverNow())) : '';
  if (s.available <= 0) return t('sold_out');
  return s.ends_at_ms ? t('ends_in', duration(s.ends_at_ms - serverNow())) : t('on_now');
}

function saleCard(s) {
  const p = state.product.get(s.sku) || { sku: s.sku, title: { en: s.sku }, price_cny_fen: s.price_cny_fen };
  const soldPct = s.quantity ? Math.round(((s.quantity - s.available) * 100) / s.quantity) : 0;
  const hold = state.holds.get(s.id);
  const buyable = s.state === 'active' && s.available > 0;
  const qty = el('select.qty', { 'aria-label': 'quantity' },
    Array.from({ length: Math.max(1, s.per_user_limit || 1) }, (_, i) => el('option', { value: i + 1 }, i + 1)));
  const card = el('article.card.sale', { dataset: { sale: s.id, state: s.available <= 0 && s.state !== 'scheduled' ? 'sold_out' : s.state } },
    productImage(p),
    el('div.card-body',
      el('span.kicker.flash', t('flash')),
      el('div.product-title', pick(p.title)),
      priceBlock(p, s.price_cny_fen),
      el('div.countdown', saleStatus(s)),
      el('div.stock', { role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': s.quantity, 'aria-valuenow': s.available },
        el('div.stock-fill', { style: `width:${soldPct}%` })),
      el('div.small.muted.stock-text', t('left', s.available, s.quantity), ' · ', t('limit', s.per_user_limit)),
      hold
        ? el('button.buy', { onclick: () => openCheckout(s, hold) }, t('pay_within', duration(hold.expires_at_ms - serverNow())))
        : el('div.buy-row', s.per_user_limit > 1 ? qty : null,
          el('button.buy', { disabled: !buyable, onclick: () => buy(s, Number(qty.value) || 1, card) }, buyable ? t('buy') : saleStatus(s))),
      el('p.sale-msg', { role: 'alert' })));
  return card;
}

function renderSales() {
  const box = $('#sales');
  const list = [...state.sales.values()].filter((s) => state.shown.has(s.id));
  // Active first, then upcoming, then ended; the newest within each.
  const rank = { active: 0, scheduled: 1, ended: 2 };
  list.sort((a, b) => rank[a.state] - rank[b.state] || (b.starts_at_ms || 0) - (a.starts_at_ms || 0));
  const messages = new Map([...box.querySelectorAll('[data-sale]')].map((n) => [n.dataset.sale, n.querySelector('.sale-msg')]));
  box.replaceChildren(...list.map((s) => {
    const card = saleCard(s);
    const old = messages.get(s.id);
    if (old && old.textContent) card.querySelector('.sale-msg').replaceWith(old);
    return card;
  }));
  renderPinned();
}

function tickCountdowns() {
  for (const card of document.querySelectorAll('[data-sale]')) {
    const s = state.sales.get(card.dataset.sale);
    if (!s) continue;
    card.querySelector('.countdown').textContent = saleStatus(s);
    const hold = state.holds.get(s.id);
    if (hold) {
      if (hold.expires_at_ms <= serverNow()) {
        state.holds.delete(s.id);
        renderSales();
        return;
      }
      card.querySelector('.buy').textContent = t('pay_within', duration(hold.expires_at_ms - serverNow()));
    }
  }
  const cd = $('#checkout-countdown');
  if (cd && checkout.hold) cd.textContent = t('pay_within', duration(checkout.hold.expires_at_ms - serverNow()));
}

function errorText(e) {
  switch (e.code) {
    case 'sold_out': return t('err_sold_out');
    case 'limit_exceeded': return t('err_limit');
    case 'quota_exceeded': return t('err_quota');
    case 'sale_not_active': return t('err_not_active');
    case 'reservation_expired': return t('err_expired');
    case 'unavailable': case 'rate_limited': return t('err_busy');
    case 'network': return t('err_network');
    case 'unauthorized': return t('session_expired');
    default: return e.message;
  }
}

function saleMessage(saleId, text, kind = 'error') {
  const n = document.querySelector(`[data-sale="${saleId}"] .sale-msg`);
  if (n) {
    n.textContent = text;
    n.className = 'sale-msg ' + kind;
  }
}

// Buy: reserve with an Idempotency-Key that is reused if this same attempt has to be retried
// (a lost answer must not hold twice), then checkout.
async function buy(s, qty, card, key = randomKey()) {
  if (!token) {
    saleMessage(s.id, t('err_signin'));
    $('#signin-dialog').showModal();
    return;
  }
  const button = card.querySelector('.buy');
  button.disabled = true;
  button.textContent = t('reserving');
  try {
    const r = await api('POST', `/api/v1/sales/${encodeURIComponent(s.id)}/reservations`, { body: { qty }, token, idempotencyKey: key });
    const hold = { ...r, sku: s.sku, price_cny_fen: s.price_cny_fen };
    state.holds.set(s.id, hold);
    sessionStorage.setItem(`silklive.hold.${s.id}`, JSON.stringify(hold));
    if (typeof r.available === 'number') s.available = Math.min(s.available, r.available);
    renderSales();
    openCheckout(s, hold);
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    renderSales();
    saleMessage(s.id, errorText(e));
    if (e.code === 'network' || e.code === 'unavailable') {
      const again = document.querySelector(`[data-sale="${s.id}"] .sale-msg`);
      again?.append(' ', el('button.link', { onclick: () => buy(s, qty, document.querySelector(`[data-sale="${s.id}"]`), key) }, t('retry')));
    }
    if (e.code === 'unauthorized') setToken(null);
  }
}

const checkout = { hold: null, sale: null };

function closeCheckout() {
  checkout.hold = null;
  if ($('#checkout').open) $('#checkout').close();
}

function openCheckout(s, hold) {
  checkout.hold = hold;
  checkout.sale = s;
  const p = state.product.get(s.sku) || { sku: s.sku, title: { en: s.sku } };
  const provider = currentProvider();
  const amount = hold.qty * s.price_cny_fen;
  const msg = el('p.sale-msg', { role: 'alert' });
  const pay = el('button.buy#pay', {
    onclick: async () => {
      pay.disabled = true;
      pay.textContent = t('paying');
      try {
        const { payment_ref } = await provider.pay({ reservation: hold, amountFen: amount, sku: s.sku });
        const order = await api('POST', `/api/v1/reservations/${encodeURIComponent(hold.reservation_id)}/confirm`, { body: { payment_ref }, token });
        forgetHold(s.id);
        showOrder(order, p);
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        msg.textContent = errorText(e);
        if (e.code === 'reservation_expired' || e.status === 404) {
          forgetHold(s.id);
          pay.remove();
          return;
        }
        pay.disabled = false;
        pay.textContent = t('pay', cny(amount));
      }
    },
  }, t('pay', cny(amount)));
  const giveBack = el('button.ghost', {
    onclick: async () => {
      try {
        await api('DELETE', `/api/v1/reservations/${encodeURIComponent(hold.reservation_id)}`, { token });
      } catch {
        /* expired or gone already: either way it is no longer ours */
      }
      forgetHold(s.id);
      closeCheckout();
    },
  }, t('release'));
  $('#checkout-body').replaceChildren(
    el('div.checkout-head', productImage(p), el('div', el('div.product-title', pick(p.title)), el('div', `${hold.qty} × ${cny(s.price_cny_fen)} = `, el('strong', cny(amount))))),
    el('p', el('strong', t('reserved')), ' · ', el('span#checkout-countdown', t('pay_within', duration(hold.expires_at_ms - serverNow())))),
    el('p.small.dev-pay', provider.development ? `⚠ ${provider.label}` : provider.label),
    msg,
    el('menu', giveBack, el('button.ghost', { onclick: closeCheckout }, t('close')), pay));
  if (!$('#checkout').open) $('#checkout').showModal();
}

function forgetHold(saleId) {
  state.holds.delete(saleId);
  sessionStorage.removeItem(`silklive.hold.${saleId}`);
  renderSales();
}

function showOrder(order, p) {
  $('#checkout-body').replaceChildren(
    el('div.checkout-head', productImage(p), el('div', el('div.product-title', pick(p.title)), el('div', `${order.qty} × · `, el('strong', cny(order.amount_cny_fen))))),
    el('p.order-done', el('strong', '✓ ' + t('order_done')), el('br'), el('span.small.muted.order-id', t('order_no', order.order_id))),
    el('menu', el('button', { onclick: closeCheckout }, t('close'))));
  saleMessage(order.sale, `✓ ${t('order_done')} — ${order.order_id}`, 'ok');
}

function restoreHolds() {
  for (let i = 0; i < sessionStorage.length; i++) {
    const k = sessionStorage.key(i);
    if (!k.startsWith('silklive.hold.')) continue;
    try {
      const h = JSON.parse(sessionStorage.getItem(k));
      if (h.expires_at_ms > Date.now()) state.holds.set(h.sale, h);
    } catch {
      /* not ours */
    }
  }
}

// ---- chat ----

const chat = { room: null, stick: true };

function userBadge(u) {
  return u.role && u.role !== 'viewer' ? el('span.role.' + u.role, u.role) : null;
}

function messageItem(ev) {
  const mine = me() && ev.user && ev.user.id === me().sub;
  return el('li.msg' + (mine ? '.mine' : ''), { dataset: { id: ev.id } },
    el('span.name', ev.user?.name || ev.user?.id || '?'), userBadge(ev.user || {}), ' ', el('span.text', ev.text));
}

function appendLine(li) {
  const box = $('#messages');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  box.append(li);
  while (box.children.length > 300) box.firstChild.remove();
  if (atBottom) box.scrollTop = box.scrollHeight;
}

function systemLine(text) {
  appendLine(el('li.msg.system', text));
}

function chatEvent(ev) {
  if (ev.type === 'chat') appendLine(messageItem(ev));
  else if (ev.type === 'moderation' && ev.action === 'delete') {
    const li = document.querySelector(`#messages [data-id="${CSS.escape(ev.message_id)}"]`);
    if (li) li.replaceChildren(el('span.muted', t('deleted')));
  }
}

function noteSkew(ev) {
  if (ev.ts_ms) state.clockSkew = ev.ts_ms - Date.now();
}

function onJoined(msg, { resumed }) {
  $('#viewers').textContent = t('viewers', msg.viewers || 0);
  if (!resumed) $('#messages').replaceChildren();
  for (const ev of msg.history || []) {
    noteSkew(ev);
    if (ev.type === 'chat' || ev.type === 'moderation') chatEvent(ev);
    else if (resumed) onRoomEvent(ev);
  }
  // The snapshot is the truth now; it is applied at once (the video is at most a few seconds
  // behind, and a viewer who just arrived should see what is on sale).
  cacheProduct(msg.pinned);
  state.pinned = msg.pinned || null;
  for (const s of msg.sales || []) {
    state.sales.set(s.id, s);
    state.shown.add(s.id);
    product(s.sku).then(renderSales);
  }
  renderSales();
}

function onRoomEvent(ev) {
  noteSkew(ev);
  switch (ev.type) {
    case 'chat':
    case 'moderation':
      chatEvent(ev);
      break;
    case 'presence':
      $('#viewers').textContent = t('viewers', ev.viewers);
      break;
    case 'pin':
    case 'unpin':
      schedule(ev);
      break;
    case 'sale': {
      const known = state.shown.has(ev.sale.id);
      state.sales.set(ev.sale.id, ev.sale);
      product(ev.sale.sku).then(() => (known ? renderSales() : schedule(ev)));
      break;
    }
    case 'stream':
      // unpublish: the encoder dropped; the channel stays live through the grace period and a
      // reconnect continues the same playlist, so the player keeps going and only says so.
      $('#stalled').hidden = ev.event !== 'unpublish';
      if (ev.event === 'publish') setLive(true);
      else if (ev.event === 'offline') setLive(false);
      break;
    case 'highlight':
      loadHighlights();
      break;
  }
}

function onChatError(msg) {
  const status = $('#chat-status');
  if (msg.code === 'rate_limited') status.textContent = t('rate_limited', Math.ceil((msg.retry_after_ms || 1000) / 1000));
  else if (msg.code === 'muted') status.textContent = t('muted');
  else if (msg.code === 'forbidden') status.textContent = t('banned');
  else if (msg.code === 'unauthorized') {
    status.textContent = t('session_expired');
    setToken(null);
  } else status.textContent = msg.message || msg.code;
  status.classList.add('warn');
  setTimeout(() => status.classList.remove('warn'), 4000);
}

function wireChat() {
  chat.room = new Room(state.channel, {
    onJoined,
    onEvent: onRoomEvent,
    onError: onChatError,
    onStatus: (s) => {
      $('#chat-status').textContent = s === 'live' ? '' : t(s);
    },
  }, token);
  chat.room.open();
  listeners.push((tok) => chat.room.setToken(tok));
  $('#chat-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = $('#chat-input');
    const text = input.value.trim();
    if (!text) return;
    if (chat.room.send({ type: 'chat', text })) input.value = '';
  });
}

// The channel's sales over HTTP as well as the room's snapshot: a sale that has not had an
// event yet (scheduled by another tool) is still on the page. Ended ones stay an hour.
async function loadSales() {
  try {
    const { sales } = await api('GET', `/api/v1/channels/${encodeURIComponent(state.channel)}/sales`);
    for (const s of sales) {
      if (s.state === 'ended' && (s.ends_at_ms || s.starts_at_ms || 0) < serverNow() - 3600000) continue;
      if (!state.sales.has(s.id)) state.sales.set(s.id, s);
      state.shown.add(s.id);
      await product(s.sku);
    }
    renderSales();
  } catch {
    /* the room's snapshot still has them */
  }
}

// ---- highlights ----

let highlightsRetry = null;

async function loadHighlights(attempt = 0) {
  clearTimeout(highlightsRetry);
  let clips = [];
  try {
    const r = await api('GET', `/api/v1/channels/${encodeURIComponent(state.channel)}/highlights`);
    clips = Array.isArray(r) ? r : r.highlights || [];
  } catch (e) {
    // A busy server or a dropped request must not cost the replays until the next event:
    // try again a few times. (A 404 means replays are not enabled here: nothing to retry.)
    if (e?.status !== 404 && attempt < 5) highlightsRetry = setTimeout(() => loadHighlights(attempt + 1), 3000);
    return;
  }
  $('#highlights').hidden = clips.length === 0;
  let unnamed = false;
  $('#clips').replaceChildren(...await Promise.all(clips.map(async (c) => {
    const p = await product(c.sku);
    unnamed ||= !p;
    return el('figure.clip', el('video', { src: c.url, controls: true, preload: 'metadata', playsInline: true }),
      el('figcaption', t('replay_of', pick(p?.title) || c.sku), el('span.muted.small', ` · ${duration(c.end_ms - c.start_ms)}`)));
  })));
  // a product that could not be looked up is shown by its sku; name it when the server answers
  if (unnamed && attempt < 5) highlightsRetry = setTimeout(() => loadHighlights(attempt + 1), 3000);
}

// ---- channel document ----

async function refreshChannel() {
  try {
    const doc = await api('GET', `/api/v1/channels/${encodeURIComponent(state.channel)}`);
    state.doc = doc;
    $('#title').textContent = pick(doc.title);
    document.title = `${pick(doc.title)} — silklive`;
    $('#viewers').textContent = t('viewers', doc.viewers || 0);
    setLive(doc.live);
    return doc;
  } catch (e) {
    if (e.status === 404) {
      $('#title').textContent = t('no_channel');
      showOffline(true);
      return null;
    }
    setTimeout(refreshChannel, 5000);
    return null;
  }
}

async function bootRoom(channel) {
  state.channel = channel;
  $('#room').hidden = false;
  restoreHolds();
  const doc = await refreshChannel();
  if (!doc) return;
  api('GET', `/api/v1/pavilions/${encodeURIComponent(doc.pavilion)}`)
    .then((p) => ($('#pavilion').textContent = `${p.name.zh || ''} · ${p.name.en || p.code}`))
    .catch(() => {});
  wireChat();
  loadSales();
  loadHighlights();
  setInterval(releaseDue, 250);
  setInterval(tickCountdowns, 1000);
  // The room's stream events move the player; this poll is the safety net when they are missed.
  setInterval(refreshChannel, 15000);
  const v = $('#video');
  v.addEventListener('ended', () => setTimeout(refreshChannel, 1000));
  rerender = () => {
    renderSales();
    refreshChannel();
  };
}

// ---- boot ----

// What the browser tests (and anyone debugging in devtools) read: the playback position as
// program-date-time, and the room's connection.
window.silklive = {
  playbackPdt,
  get room() {
    return chat.room;
  },
};

applyText();
wireSignIn();
const m = /^\/c\/([A-Za-z0-9_-]{1,64})\/?$/.exec(location.pathname);
if (m) bootRoom(m[1]);
else if (location.pathname.startsWith('/c/')) {
  $('#room').hidden = false;
  $('#title').textContent = t('no_channel');
} else bootDirectory();
