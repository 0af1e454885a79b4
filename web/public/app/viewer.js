// viewer: the directory of live pavilions (/) and a channel's live room (/c/{channel}) — the
// player, chat, the pinned product and flash sales with checkout, shown in step with the video.

import Hls from '/vendor/hls.min.mjs';
import { api, ApiError, takeFragmentToken, claimsOf, pick, money, cny, duration, randomKey, el, $, toast, Room, lang } from './common.js';
import { idNumberProblem, isMaskedId, providers, chooseProvider, createPayment, completeDevPayment, fieldOf, pollConfirm, drawQr } from './payment.js';

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
    pay_within: (t) => `Pay within ${t}`, paying: 'Paying…',
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
    session_expired: 'Your sign-in expired. Sign in again.', origin: 'origin price',
    bonded_sh: 'Ships from the Shanghai bonded warehouse', overseas: 'Ships from overseas',
    direct_mail: 'Direct mail from origin', replay_of: (t) => `Replay: ${t}`, no_channel: 'No such channel.', host_reconnecting: 'Waiting for the host…',
    checkout: 'Checkout', buyer_head: 'Buyer (declared to customs)', consignee_head: 'Ship to',
    f_name: 'Real name', f_id: 'Resident identity card number', f_phone: 'Mobile phone',
    f_c_name: 'Consignee', f_c_phone: 'Consignee phone', f_address: 'Address', f_district: 'District code (6 digits)',
    same_as_buyer: 'Same as the buyer', to_payment: 'Continue to payment', preparing: 'Preparing…',
    demo_hint: 'Demo server: no money moves.', demo_fill: 'Fill in an example buyer',
    id_note: 'Cross-border goods are declared to China customs in the buyer\'s real name. The number is stored encrypted and shown masked.',
    id_saved: 'Your saved number is used unless you type another.',
    required: 'Required.', bad_phone: 'Enter a phone number (digits).', bad_district: 'Six digits, e.g. 310115.',
    id_len: 'An identity number has 18 characters.', id_chars: 'Seventeen digits (not starting with 0), then a digit or X.',
    id_birth: 'Characters 7–14 must be a real birth date (YYYYMMDD).',
    id_check: 'The last character does not match — check the number for a typo.',
    goods: 'Goods', discount: 'Discount', freight: 'Shipping', import_tax: 'Import tax', total: 'Total',
    tax_note: 'Cross-border retail import tax: VAT and consumption tax at 70 %, no tariff within your quota.',
    dev_pay: 'Pay (demo, no money moves)', dev_note: 'Demo payment — test mode, no money moves.',
    scan_wechat: 'Scan with WeChat to pay', open_wechat: 'Pay in WeChat', h5_note: 'Come back to this page after paying.',
    err_provider: 'This payment method is not supported here.', waiting_payment: 'Waiting for the payment…',
    waiting_late: 'The hold has ended; checking whether the payment arrived in time…',
    hold_ended: 'Your hold ended before the payment arrived. Any money taken is refunded automatically.',
    my_orders: 'My orders', refresh: 'Refresh', loading: 'Loading…', no_orders: 'No orders yet.',
    st_paid: 'Paid', st_declared: 'Declared to customs', st_shipped: 'Shipped', st_delivered: 'Delivered',
    st_declaration_rejected: 'Customs declaration rejected', st_refunded: 'Refunded', refund_pending: 'refund in progress',
    ordered_at: 'Ordered', customs: 'Customs', shipment: 'Shipment', refund: 'Refund',
    decl_queued: 'waiting to be declared', decl_delivered: 'with customs', decl_declared: 'declared', decl_rejected: 'rejected',
    refund_done: 'refunded', refund_failed: 'refund failed — the shop will contact you',
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
    pay_within: (t) => `请在 ${t} 内付款`, paying: '支付中…',
    order_done: '下单成功', order_no: (id) => `订单 ${id}`, release: '放弃', close: '关闭',
    err_sold_out: '已售罄，所有商品都已被抢完。', err_limit: '您已达到本次活动的每人限购数量。',
    err_quota: '超出您的跨境电商年度个人额度。', err_not_active: '活动当前未进行。',
    err_expired: '锁定已过期，商品已重新开放购买。', err_busy: '系统繁忙，请稍后再试。',
    err_network: '网络连接失败，请检查网络后重试。', err_signin: '请先登录再购买。', retry: '重试',
    connecting: '连接中…', reconnecting: '重新连接中…', muted: '您已被禁言。', banned: '您已被移出本聊天室。',
    rate_limited: (s) => `发送太快了，请 ${s} 秒后再试。`, deleted: '消息已删除',
    pinned_line: (t) => `正在讲解：${t}`, sale_line: (t) => `限时秒杀：${t}`, say: '说点什么…',
    session_expired: '登录已过期，请重新登录。', origin: '原产地价格',
    bonded_sh: '上海保税仓发货', overseas: '海外直邮仓发货', direct_mail: '原产地直邮',
    replay_of: (t) => `回放：${t}`, no_channel: '频道不存在。', host_reconnecting: '等待主播重新连接…',
    checkout: '结算', buyer_head: '订购人（向海关申报）', consignee_head: '收货信息',
    f_name: '真实姓名', f_id: '居民身份证号码', f_phone: '手机号码',
    f_c_name: '收货人', f_c_phone: '收货人电话', f_address: '详细地址', f_district: '行政区划代码（6位）',
    same_as_buyer: '同订购人', to_payment: '去支付', preparing: '正在准备…',
    demo_hint: '演示服务器：不会扣款。', demo_fill: '填入示例订购人',
    id_note: '跨境商品须以订购人实名向中国海关申报。证件号码加密保存，脱敏显示。',
    id_saved: '如不重新填写，将使用您已保存的证件号码。',
    required: '必填。', bad_phone: '请输入电话号码（数字）。', bad_district: '6位数字，例如 310115。',
    id_len: '身份证号码应为18位。', id_chars: '前17位为数字（首位不为0），最后一位为数字或X。',
    id_birth: '第7至14位应为有效的出生日期（年月日）。', id_check: '校验位不符，请检查号码是否输错。',
    goods: '商品金额', discount: '优惠', freight: '运费', import_tax: '进口税费', total: '应付总额',
    tax_note: '跨境电商零售进口：限值以内关税为0，进口环节增值税、消费税按应纳税额的70%征收。',
    dev_pay: '支付（演示，不扣款）', dev_note: '演示支付：测试模式，不会扣款。',
    scan_wechat: '请使用微信扫一扫支付', open_wechat: '打开微信支付', h5_note: '支付完成后请返回本页面。',
    err_provider: '此处不支持该支付方式。', waiting_payment: '等待支付结果…',
    waiting_late: '锁定已结束，正在确认付款是否及时到账…',
    hold_ended: '付款到账前锁定已结束。如已扣款，将自动原路退回。',
    my_orders: '我的订单', refresh: '刷新', loading: '加载中…', no_orders: '暂无订单。',
    st_paid: '已支付', st_declared: '已向海关申报', st_shipped: '已发货', st_delivered: '已签收',
    st_declaration_rejected: '海关申报被退回', st_refunded: '已退款', refund_pending: '退款处理中',
    ordered_at: '下单时间', customs: '海关申报', shipment: '物流', refund: '退款',
    decl_queued: '待申报', decl_delivered: '海关处理中', decl_declared: '申报成功', decl_rejected: '已退单',
    refund_done: '已退款', refund_failed: '退款失败，商家会与您联系',
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
  $('#my-orders').hidden = !c;
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
  $('#my-orders').onclick = () => openOrders();
  // Another person signed in: their profile, not the last one's; no one's payments polled.
  listeners.push(() => {
    checkout.profile = undefined;
    checkout.draft = {};
    for (const p of pollers.values()) p.stop();
    pollers.clear();
    if ($('#orders-dialog').open) $('#orders-dialog').close();
  });
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
    if ($('#checkout').open && checkout.redraw) checkout.redraw();
    if ($('#orders-dialog').open) listOrders();
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

// ---- checkout: who buys and where it goes → the price with tax → the payment → the order ----
//
// Cross-border goods are declared to customs in the buyer's real name, so the form asks for the
// buyer's name, identity number and phone, and where the parcel goes. The server computes every
// amount and shows them before anything is paid; the order exists once the server verified the
// provider's notification, which the page learns by polling confirm.

const checkout = {
  hold: null, // the hold the dialog shows
  step: null, // 'form' | 'pay' | 'order' | 'ended'
  draft: {}, // what was typed (never the identity number in storage)
  profile: undefined, // GET /me/profile: undefined = not asked yet, null = none
  redraw: null,
};
const pollers = new Map(); // reservation id → its payment's confirm poller

// [field, label key, input attributes]
const FIELDS = {
  buyer: [
    ['buyer.name', 'f_name', { autocomplete: 'name', maxLength: 50 }],
    ['buyer.id_number', 'f_id', { autocomplete: 'off', maxLength: 18, autocapitalize: 'characters' }],
    ['buyer.phone', 'f_phone', { type: 'tel', autocomplete: 'tel', inputMode: 'tel', maxLength: 20 }],
  ],
  consignee: [
    ['consignee.name', 'f_c_name', { autocomplete: 'shipping name', maxLength: 50 }],
    ['consignee.phone', 'f_c_phone', { type: 'tel', autocomplete: 'shipping tel', inputMode: 'tel', maxLength: 20 }],
    ['consignee.address', 'f_address', { autocomplete: 'shipping street-address', maxLength: 200 }],
    ['consignee.district', 'f_district', { inputMode: 'numeric', maxLength: 6, placeholder: '310115' }],
  ],
};

// The example in GB 11643 itself (a valid number of no one), for demo servers.
const EXAMPLE_BUYER = {
  'buyer.name': '张三', 'buyer.id_number': '11010519491231002X', 'buyer.phone': '13800138000',
  'consignee.name': '张三', 'consignee.phone': '13800138000', 'consignee.address': '上海市浦东新区世纪大道100号', 'consignee.district': '310115',
};

function closeCheckout() {
  checkout.hold = null;
  checkout.redraw = null;
  if ($('#checkout').open) $('#checkout').close();
}

function forgetHold(saleId) {
  state.holds.delete(saleId);
  sessionStorage.removeItem(`silklive.hold.${saleId}`);
  renderSales();
}

function keepHold(hold) {
  state.holds.set(hold.sale, hold);
  sessionStorage.setItem(`silklive.hold.${hold.sale}`, JSON.stringify(hold));
}

const productOf = (sku) => state.product.get(sku) || { sku, title: { en: sku } };

function checkoutHead(p, qty, priceFen, totalFen) {
  return el('div.checkout-head', productImage(p),
    el('div', el('div.product-title', pick(p.title)),
      el('div', `${qty} × ${cny(priceFen)}`, totalFen !== undefined ? [' = ', el('strong', cny(totalFen))] : null)));
}

function countdownLine() {
  return el('p.hold-line', el('strong', t('reserved')), ' · ', el('span#checkout-countdown', t('pay_within', duration(checkout.hold.expires_at_ms - serverNow()))));
}

function show(step, redraw, ...children) {
  checkout.step = step;
  checkout.redraw = redraw;
  $('#checkout-body').replaceChildren(...children);
  $('#checkout').dataset.step = step;
  if (!$('#checkout').open) $('#checkout').showModal();
}

function openCheckout(s, hold) {
  checkout.hold = hold;
  if (hold.payment) {
    showPay(s, hold);
    watchPayment(hold);
  } else showForm(s, hold);
}

async function loadProfile() {
  if (checkout.profile !== undefined) return checkout.profile;
  try {
    checkout.profile = await api('GET', '/api/v1/me/profile', { token });
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    if (e.status !== 404) return null; // ask again next time
    checkout.profile = null;
  }
  return checkout.profile;
}

function giveBackButton(s, hold) {
  return el('button.ghost', {
    type: 'button',
    onclick: async () => {
      try {
        await api('DELETE', `/api/v1/reservations/${encodeURIComponent(hold.reservation_id)}`, { token });
      } catch {
        /* expired or gone already: either way it is no longer ours */
      }
      pollers.get(hold.reservation_id)?.stop();
      pollers.delete(hold.reservation_id);
      forgetHold(s.id);
      closeCheckout();
    },
  }, t('release'));
}

// What is wrong with one field's value (a message), or ''.
function fieldProblem(name, value, input) {
  const v = value.trim();
  if (!v) return t('required');
  if (name === 'buyer.id_number') {
    if (input?.dataset.masked && v === input.dataset.masked) return '';
    const p = idNumberProblem(v);
    return p ? t(p) : '';
  }
  if (name.endsWith('.phone')) return /^\+?\d{5,20}$/.test(v.replace(/[\s-]/g, '')) ? '' : t('bad_phone');
  if (name === 'consignee.district') return /^\d{6}$/.test(v) ? '' : t('bad_district');
  return '';
}

function setFieldError(form, name, text) {
  const box = form.querySelector(`[data-field="${name}"]`);
  if (!box) return false;
  box.querySelector('.field-error').textContent = text || '';
  box.classList.toggle('invalid', !!text);
  box.querySelector('input').setAttribute('aria-invalid', text ? 'true' : 'false');
  return true;
}

async function showForm(s, hold) {
  const p = productOf(s.sku);
  const [profile, offered] = await Promise.all([loadProfile(), providers(token)]);
  if (checkout.hold !== hold) return;
  const d = checkout.draft;
  const saved = (name) => {
    const [part, key] = name.split('.');
    return profile?.[part]?.[key] ?? '';
  };
  const maskedId = isMaskedId(saved('buyer.id_number')) ? saved('buyer.id_number') : '';
  const msg = el('p.sale-msg#checkout-msg', { role: 'alert' });
  const input = (name, attrs) => {
    const n = el('input', { name, id: 'f-' + name.replace('.', '-'), value: d[name] ?? saved(name), ...attrs });
    if (name === 'buyer.id_number' && maskedId) {
      n.dataset.masked = maskedId;
      if (d[name] === undefined) n.value = maskedId;
      n.addEventListener('focus', () => n.value === maskedId && n.select());
    }
    return n;
  };
  const fieldset = (legend, list, extra) => el('fieldset',
    el('legend', t(legend)), extra,
    list.map(([name, label, attrs]) => el('label.field', { dataset: { field: name } },
      el('span', t(label)), input(name, attrs), el('span.field-error', { role: 'alert' }))));
  const same = el('button.link.small', { type: 'button', onclick: () => {
    for (const k of ['name', 'phone']) {
      form.elements[`consignee.${k}`].value = form.elements[`buyer.${k}`].value;
      d[`consignee.${k}`] = form.elements[`buyer.${k}`].value;
      setFieldError(form, `consignee.${k}`, '');
    }
  } }, t('same_as_buyer'));
  // A demo server (the development provider only): a made-up buyer fills the form in one click.
  const example = offered.includes('wechatpay') ? null : el('p.small.dev-pay#co-example', t('demo_hint'), ' ',
    el('button.link.small', { type: 'button', onclick: () => {
      for (const [name, v] of Object.entries(EXAMPLE_BUYER)) {
        form.elements[name].value = v;
        d[name] = v;
        setFieldError(form, name, '');
      }
    } }, t('demo_fill')));
  const submit = el('button.buy#co-continue', { type: 'submit' }, t('to_payment'));
  const form = el('form#co-form.co-form', { novalidate: true },
    example,
    fieldset('buyer_head', FIELDS.buyer, el('p.small.muted', t('id_note'), maskedId ? [' ', t('id_saved')] : null)),
    fieldset('consignee_head', FIELDS.consignee, same),
    msg,
    el('menu', giveBackButton(s, hold), el('button.ghost', { type: 'button', onclick: closeCheckout }, t('close')), submit));
  form.addEventListener('input', (e) => {
    const n = e.target;
    d[n.name] = n.value;
    // The identity number is checked as soon as it is complete; the rest on leaving the field.
    if (n.name === 'buyer.id_number' && n.value.trim().length >= 18) setFieldError(form, n.name, fieldProblem(n.name, n.value, n));
    else if (n.closest('.field')?.classList.contains('invalid')) setFieldError(form, n.name, fieldProblem(n.name, n.value, n));
  });
  form.addEventListener('focusout', (e) => {
    const n = e.target;
    if (n.name && n.value) setFieldError(form, n.name, fieldProblem(n.name, n.value, n));
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    msg.textContent = '';
    let first = null;
    const body = { buyer: {}, consignee: {} };
    for (const n of form.querySelectorAll('input[name]')) {
      const problem = fieldProblem(n.name, n.value, n);
      setFieldError(form, n.name, problem);
      if (problem && !first) first = n;
      const [part, key] = n.name.split('.');
      let v = n.value.trim();
      if (key === 'phone') v = v.replace(/[\s-]/g, '');
      if (key === 'id_number') {
        if (n.dataset.masked && v === n.dataset.masked) continue; // the saved one is used
        v = v.toUpperCase();
      }
      body[part][key] = v;
    }
    if (first) return first.focus();
    submit.disabled = true;
    submit.textContent = t('preparing');
    try {
      const provider = await chooseProvider(token);
      const payment = await createPayment(hold.reservation_id, { provider, ...body, token });
      hold.payment = payment;
      if (payment.expires_at_ms) hold.expires_at_ms = payment.expires_at_ms;
      keepHold(hold);
      // The server keeps what was used (the number sealed); the next checkout starts from that.
      checkout.profile = undefined;
      checkout.draft = {};
      if (checkout.hold !== hold) return;
      showPay(s, hold);
      watchPayment(hold);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      submit.disabled = false;
      submit.textContent = t('to_payment');
      const named = err.status === 400 && fieldOf(err.message);
      if (named && setFieldError(form, named.field, named.text)) {
        form.elements[named.field]?.focus();
        return;
      }
      if (err.code === 'quota_exceeded') {
        setFieldError(form, 'buyer.id_number', t('err_quota'));
        return;
      }
      msg.textContent = errorText(err);
      msg.className = 'sale-msg error';
      if (err.code === 'reservation_expired' || err.status === 404) {
        forgetHold(s.id);
        submit.remove();
      }
      if (err.code === 'unauthorized') setToken(null);
    }
  });
  show('form', () => showForm(s, hold),
    el('h2#checkout-title', t('checkout')),
    checkoutHead(p, hold.qty, s.price_cny_fen, hold.qty * s.price_cny_fen),
    countdownLine(),
    form);
}

function breakdownTable(amount, b = {}) {
  const row = (k, label, fen, sign = '') => el('tr', { dataset: { k } }, el('th', { scope: 'row' }, t(label)), el('td', sign + cny(fen)));
  return el('table.breakdown#co-breakdown',
    el('tbody',
      row('goods', 'goods', b.goods_cny_fen ?? amount),
      b.discount_cny_fen ? row('discount', 'discount', b.discount_cny_fen, '−') : null,
      row('freight', 'freight', b.freight_cny_fen ?? 0),
      row('tax', 'import_tax', b.tax_cny_fen ?? 0)),
    el('tfoot', el('tr', { dataset: { k: 'total' } }, el('th', { scope: 'row' }, t('total')), el('td', el('strong', cny(amount))))));
}

function providerStep(payment, msg) {
  const c = payment.client || {};
  if (c.kind === 'dev') {
    const pay = el('button.buy#dev-pay', {
      type: 'button',
      onclick: async () => {
        pay.disabled = true;
        pay.textContent = t('paying');
        msg.textContent = '';
        try {
          await completeDevPayment(payment, token);
          pollers.get(payment.reservation_id)?.now();
        } catch (e) {
          if (!(e instanceof ApiError)) throw e;
          msg.textContent = errorText(e);
          msg.className = 'sale-msg error';
          pay.disabled = false;
          pay.textContent = t('dev_pay');
        }
      },
    }, t('dev_pay'));
    return el('div.provider', { dataset: { kind: c.kind } }, el('p.small.dev-pay', '⚠ ', t('dev_note')), pay);
  }
  if (c.kind === 'wechatpay_native') {
    const canvas = el('canvas.qr#pay-qr', { role: 'img', 'aria-label': t('scan_wechat') });
    drawQr(canvas, c.code_url);
    return el('div.provider.wechat', { dataset: { kind: c.kind } }, canvas, el('p', el('strong', t('scan_wechat'))));
  }
  if (c.kind === 'wechatpay_h5') {
    return el('div.provider.wechat', { dataset: { kind: c.kind } },
      el('a.button.buy#h5-pay', { href: c.h5_url, target: '_blank', rel: 'noopener' }, t('open_wechat')),
      el('p.small.muted', t('h5_note')));
  }
  return el('p.sale-msg.error', t('err_provider'));
}

function showPay(s, hold) {
  const payment = hold.payment;
  const p = productOf(s.sku);
  const msg = el('p.sale-msg#checkout-msg', { role: 'alert' });
  show('pay', () => showPay(s, hold),
    el('h2#checkout-title', t('checkout')),
    checkoutHead(p, hold.qty, s.price_cny_fen),
    breakdownTable(payment.amount_cny_fen, payment.breakdown),
    el('p.small.muted', t('tax_note')),
    countdownLine(),
    providerStep(payment, msg),
    el('p.small.muted#co-status', { 'aria-live': 'polite' }, t('waiting_payment')),
    msg,
    el('menu', giveBackButton(s, hold), el('button.ghost', { type: 'button', onclick: closeCheckout }, t('close'))));
}

// Polls confirm for a hold's payment (once per hold), in the background too: a buyer who closed
// the dialog and paid on the phone still gets the order.
function watchPayment(hold) {
  const rid = hold.reservation_id;
  if (pollers.has(rid) || !hold.payment) return;
  const showing = () => checkout.hold?.reservation_id === rid && $('#checkout').open;
  pollers.set(rid, pollConfirm(rid, hold.payment.payment_id, token, {
    order: (order) => {
      pollers.delete(rid);
      forgetHold(hold.sale);
      if (showing()) showOrder(order);
      else toast(`✓ ${t('order_done')} — ${order.order_id}`);
      saleMessage(hold.sale, `✓ ${t('order_done')} — ${order.order_id}`, 'ok');
    },
    ended: (e) => {
      pollers.delete(rid);
      forgetHold(hold.sale);
      const text = e.code === 'reservation_expired' ? t('hold_ended') : errorText(e);
      saleMessage(hold.sale, text);
      if (showing()) {
        show('ended', null,
          el('h2#checkout-title', t('checkout')),
          el('p.sale-msg.error#checkout-msg', { role: 'alert' }, text),
          el('menu', el('button', { type: 'button', onclick: closeCheckout }, t('close'))));
      }
      if (e.status === 401) setToken(null);
    },
    waiting: () => {
      const st = showing() && $('#co-status');
      if (st) st.textContent = checkout.hold.expires_at_ms > serverNow() ? t('waiting_payment') : t('waiting_late');
    },
  }, {
    // The server keeps a hold with a payment a minute past its end for a late notification, then
    // answers 409; should that answer never come (no network), stop a while after.
    deadlineMs: hold.expires_at_ms - state.clockSkew + 180000,
  }));
}

const orderStateBadge = (o) => el('span.order-state', { dataset: { state: o.state } },
  t('st_' + o.state), o.refund?.state === 'pending' ? ` · ${t('refund_pending')}` : null);

function showOrder(order) {
  const p = productOf(order.sku);
  show('order', () => showOrder(order),
    el('h2#checkout-title', t('checkout')),
    checkoutHead(p, order.qty, order.price_cny_fen ?? order.amount_cny_fen / order.qty),
    el('p.order-done', el('strong', '✓ ' + t('order_done')), el('br'), el('span.small.muted.order-id', t('order_no', order.order_id))),
    el('p', orderStateBadge(order)),
    order.breakdown ? breakdownTable(order.amount_cny_fen, order.breakdown) : el('p', el('strong', cny(order.amount_cny_fen))),
    el('menu', el('button.ghost', { type: 'button', onclick: () => openOrders() }, t('my_orders')),
      el('button', { type: 'button', onclick: closeCheckout }, t('close'))));
}

function restoreHolds() {
  for (let i = 0; i < sessionStorage.length; i++) {
    const k = sessionStorage.key(i);
    if (!k.startsWith('silklive.hold.')) continue;
    try {
      const h = JSON.parse(sessionStorage.getItem(k));
      // a hold with a payment is kept a minute past its end: the notification may still come
      if (h.expires_at_ms > Date.now() - (h.payment ? 60000 : 0)) {
        state.holds.set(h.sale, h);
        if (token) watchPayment(h);
      }
    } catch {
      /* not ours */
    }
  }
}

// ---- my orders ----

const orderTime = (ms) => (ms ? new Date(ms).toLocaleString(lang() === 'zh' ? 'zh-CN' : 'en') : '');

async function openOrders(detailId = null) {
  closeCheckout();
  if (!$('#orders-dialog').open) $('#orders-dialog').showModal();
  if (detailId) return showOrderDetail(detailId);
  return listOrders();
}

async function listOrders() {
  const box = $('#orders-body');
  const refresh = el('button.ghost.small#orders-refresh', { type: 'button', onclick: listOrders }, t('refresh'));
  const head = el('div.row', el('h2.grow', t('my_orders')), refresh);
  const closeBtn = el('menu', el('button', { type: 'button', onclick: () => $('#orders-dialog').close() }, t('close')));
  box.replaceChildren(head, el('p.muted', t('loading')), closeBtn);
  let orders;
  try {
    const r = await api('GET', '/api/v1/me/orders', { token });
    orders = (Array.isArray(r) ? r : r.orders || []).slice().sort((a, b) => (b.created_at_ms || 0) - (a.created_at_ms || 0));
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    if (e.code === 'unauthorized') setToken(null);
    box.replaceChildren(head, el('p.sale-msg.error', errorText(e)), closeBtn);
    return;
  }
  await Promise.all([...new Set(orders.map((o) => o.sku))].map(product));
  box.replaceChildren(head,
    el('p.muted#orders-empty', { hidden: orders.length > 0 }, t('no_orders')),
    el('ul.orders-list#my-orders-list', orders.map((o) => el('li', el('button.order-item', {
      type: 'button', dataset: { order: o.order_id, state: o.state }, onclick: () => showOrderDetail(o.order_id),
    },
    productImage(productOf(o.sku)),
    el('span.order-main', el('span.product-title', pick(productOf(o.sku).title)),
      el('span.small.muted', `${o.qty} × ${o.price_cny_fen !== undefined ? cny(o.price_cny_fen) : ''} · ${orderTime(o.created_at_ms)}`)),
    el('span.order-side', el('strong', cny(o.amount_cny_fen)), orderStateBadge(o)))))),
    closeBtn);
}

async function showOrderDetail(id) {
  const box = $('#orders-body');
  const back = el('button.ghost.small', { type: 'button', onclick: listOrders }, '← ', t('my_orders'));
  box.replaceChildren(back, el('p.muted', t('loading')));
  let o;
  try {
    o = await api('GET', `/api/v1/orders/${encodeURIComponent(id)}`, { token });
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    box.replaceChildren(back, el('p.sale-msg.error', errorText(e)));
    return;
  }
  const p = await product(o.sku) || productOf(o.sku);
  const dl = (...rows) => el('dl.order-facts', rows.filter(Boolean).flatMap(([k, v]) => [el('dt', t(k)), el('dd', v)]));
  const decl = o.declaration;
  box.replaceChildren(back,
    el('div.order-detail', { dataset: { order: o.order_id, state: o.state } },
      checkoutHead(p, o.qty, o.price_cny_fen ?? o.amount_cny_fen / o.qty),
      el('p', orderStateBadge(o), ' ', el('span.small.muted.order-id', t('order_no', o.order_id))),
      breakdownTable(o.amount_cny_fen, o.breakdown),
      dl(
        ['ordered_at', orderTime(o.created_at_ms)],
        o.buyer ? ['buyer_head', `${o.buyer.name || ''} · ${o.buyer.id_number || o.buyer.id_masked || ''}`] : null,
        o.consignee ? ['consignee_head', `${o.consignee.name || ''} · ${o.consignee.phone || ''} · ${o.consignee.address || ''} (${o.consignee.district || ''})`] : null,
        decl ? ['customs', [t('decl_' + decl.state), decl.reason ? ` — ${decl.reason}` : ''].join('')] : null,
        o.shipment ? ['shipment', `${o.shipment.carrier || ''} ${o.shipment.waybill || ''}`.trim()] : null,
        o.refund ? ['refund', [t('refund_' + o.refund.state), o.refund.amount_cny_fen ? ` · ${cny(o.refund.amount_cny_fen)}` : '', o.refund.reason ? ` — ${o.refund.reason}` : ''].join('')] : null)),
    el('menu', el('button', { type: 'button', onclick: () => $('#orders-dialog').close() }, t('close'))));
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
