// common: what the viewer page and the consul console share — the HTTP API, tokens, the room's
// WebSocket with reconnect and `since` recovery, money and text formatting, and a DOM builder.

export class ApiError extends Error {
  constructor(status, code, message, retryAfterS) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfterS = retryAfterS;
  }
}

// One API call. Resolves with the parsed body of a 2xx; rejects with ApiError carrying api.md's
// error code (or `network` when the server could not be reached at all).
export async function api(method, path, { body, token, idempotencyKey, signal } = {}) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  if (idempotencyKey) headers['idempotency-key'] = idempotencyKey;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: 'no-store',
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'the server cannot be reached');
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (res.ok) return data;
  const err = data && data.error ? data.error : { code: 'http_' + res.status, message: res.statusText };
  throw new ApiError(res.status, err.code, err.message, Number(res.headers.get('retry-after')) || 0);
}

// ---- tokens ----

// A token arrives in the URL fragment (`#token=<jwt>`) so it never reaches a server log; it is
// kept in localStorage under `key` and removed from the address bar at once.
export function takeFragmentToken(key) {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    localStorage.setItem(key, decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search);
  }
  return loadToken(key);
}

// The stored token if it is still valid for at least a minute; an expired one is forgotten.
export function loadToken(key) {
  const t = localStorage.getItem(key);
  if (!t) return null;
  const c = claimsOf(t);
  if (!c || (c.exp && c.exp * 1000 < Date.now() + 60000)) {
    localStorage.removeItem(key);
    return null;
  }
  return t;
}

// Claims of a JWT for display only; the server verifies the signature on every call.
export function claimsOf(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(
      atob(part + '==='.slice((part.length + 3) % 4))
        .split('')
        .map((ch) => '%' + ch.charCodeAt(0).toString(16).padStart(2, '0'))
        .join(''),
    );
    return JSON.parse(json);
  } catch {
    return null;
  }
}

// ---- formatting ----

export const lang = () => (localStorage.getItem('silklive.lang') || (navigator.language || 'en')).startsWith('zh') ? 'zh' : 'en';

// A localized title object {"en","zh",...}: the reader's language first, then the other.
export function pick(title, prefer = lang()) {
  if (!title) return '';
  if (typeof title === 'string') return title;
  return title[prefer] || title.en || title.zh || Object.values(title)[0] || '';
}

const digitsCache = new Map();
function minorDigits(currency) {
  if (!digitsCache.has(currency)) {
    let d = 2;
    try {
      d = new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits;
    } catch {
      /* unknown code: keep two */
    }
    digitsCache.set(currency, d);
  }
  return digitsCache.get(currency);
}

// Integer minor units → "¥69.00", "CLP 12,990" (the currency's own number of decimals).
export function money(amountMinor, currency) {
  const d = minorDigits(currency);
  const value = amountMinor / 10 ** d;
  try {
    return new Intl.NumberFormat(lang() === 'zh' ? 'zh-CN' : 'en', { style: 'currency', currency }).format(value);
  } catch {
    return `${value.toFixed(d)} ${currency}`;
  }
}

export const cny = (fen) => money(fen, 'CNY');

export function duration(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

export function randomKey() {
  return crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random().toString(16).slice(2);
}

// ---- DOM ----

// el('div.card#x', {onclick, dataset, ...}, children...) — text children are text nodes, never HTML.
export function el(spec, attrs, ...children) {
  const m = /^([a-z0-9]+)?((?:[.#][\w-]+)*)$/i.exec(spec);
  const node = document.createElement((m && m[1]) || 'div');
  for (const part of ((m && m[2]) || '').match(/[.#][\w-]+/g) || []) {
    if (part[0] === '.') node.classList.add(part.slice(1));
    else node.id = part.slice(1);
  }
  if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k in node && k !== 'list' && k !== 'form') node[k] = v;
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export const $ = (sel, root = document) => root.querySelector(sel);

export function toast(text, kind = 'info') {
  let box = $('#toasts');
  if (!box) document.body.append((box = el('div#toasts', { role: 'status', 'aria-live': 'polite' })));
  const t = el('div.toast.' + kind, text);
  box.append(t);
  setTimeout(() => t.remove(), 5000);
}

// ---- the room (WebSocket API, subprotocol silklive.v1) ----

// One channel's room: joins with the token, and after any drop reconnects with backoff and
// joins with `since` = the last event id seen, so the page neither misses nor repeats events.
// Handlers: onJoined(msg, {resumed}), onEvent(msg), onStatus(state, detail), onError(msg).
export class Room {
  constructor(channel, handlers, token = null) {
    this.channel = channel;
    this.h = handlers;
    this.token = token;
    this.lastId = null;
    this.attempt = 0;
    this.closed = false;
    this.ws = null;
    this.timer = null;
  }

  wsUrl() {
    return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  }

  open() {
    this.closed = false;
    clearTimeout(this.timer);
    const ws = new WebSocket(this.wsUrl(), 'silklive.v1');
    this.ws = ws;
    this.h.onStatus?.('connecting');
    ws.onopen = () => {
      const join = { type: 'join', channel: this.channel };
      if (this.token) join.token = this.token;
      if (this.lastId) join.since = this.lastId;
      ws.send(JSON.stringify(join));
    };
    ws.onmessage = (e) => this.receive(e.data);
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.closed) return;
      this.h.onStatus?.('reconnecting', e.code);
      // 1008: we fell behind or broke a rule; 1001: the node is going away. Either way, come back.
      const delay = Math.min(10000, 500 * 2 ** this.attempt++) * (0.75 + Math.random() / 2);
      this.timer = setTimeout(() => this.open(), delay);
    };
  }

  receive(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (msg.type === 'joined') {
      this.attempt = 0;
      const resumed = this.lastId !== null && !msg.gap;
      for (const ev of msg.history || []) if (ev.id) this.lastId = ev.id;
      this.h.onStatus?.('live');
      this.h.onJoined?.(msg, { resumed });
      return;
    }
    if (msg.type === 'error') {
      if (msg.code === 'forbidden' || msg.code === 'unauthorized') {
        // Banned, or the token is no good: reconnecting would be refused again.
        if (msg.code === 'forbidden') this.closed = true;
      }
      this.h.onError?.(msg);
      return;
    }
    if (msg.id) this.lastId = msg.id;
    this.h.onEvent?.(msg);
  }

  send(obj) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  // A new token (sign-in/out) needs a new join.
  setToken(token) {
    this.token = token;
    if (this.ws) this.ws.close(1000);
    else this.open();
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
  }
}
