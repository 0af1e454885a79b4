// payment: the client side of paying for a hold (api.md "Payments", docs/design/payments.md).
// The page never decides that something is paid: it asks the server for a payment intent, shows
// what the provider needs (a demo button, a WeChat Pay QR code, a WeChat Pay H5 link), and polls
// confirm until the server has verified the provider's notification and made the order.

import { encode as encodeQr } from '/vendor/uqr.mjs';
import { api, ApiError } from './common.js';

// ---- the buyer's identity number (GB 11643) ----

const WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK = '10X98765432';

// What is wrong with a PRC resident identity number, as a message key ('id_len', 'id_chars',
// 'id_birth', 'id_check'), or null when it is valid. The same rules as the server's: 18
// characters, 17 digits (the first not 0) and a check digit or X, a real birth date from 1900
// to today, the ISO 7064 MOD 11-2 check character.
export function idNumberProblem(text, today = new Date()) {
  const s = String(text || '').trim().toUpperCase();
  if (s.length !== 18) return 'id_len';
  if (!/^[1-9]\d{16}[\dX]$/.test(s)) return 'id_chars';
  const y = Number(s.slice(6, 10));
  const m = Number(s.slice(10, 12));
  const d = Number(s.slice(12, 14));
  const date = new Date(Date.UTC(y, m - 1, d));
  if (y < 1900 || y > today.getFullYear() || date.getUTCMonth() !== m - 1 || date.getUTCDate() !== d) return 'id_birth';
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += Number(s[i]) * WEIGHTS[i];
  return CHECK[sum % 11] === s[17] ? null : 'id_check';
}

// A masked number as the server shows it ("110***********123X").
export const isMaskedId = (text) => /\*/.test(String(text || ''));

// ---- providers ----

let offered = null;

// The providers this server takes (GET /api/v1/payments/providers), ["dev"] when it cannot say.
export async function providers(token) {
  if (!offered) {
    offered = api('GET', '/api/v1/payments/providers', { token })
      .then((r) => (Array.isArray(r?.providers) && r.providers.length ? r.providers : ['dev']))
      .catch(() => {
        offered = null; // ask again next time
        return ['dev'];
      });
  }
  return offered;
}

// The provider to pay with: `?pay=<id>` when the server offers it (for trying one out), else
// WeChat Pay when offered, else the development one.
export async function chooseProvider(token) {
  const list = await providers(token);
  const wanted = new URLSearchParams(location.search).get('pay');
  if (wanted && list.includes(wanted)) return wanted;
  if (list.includes('wechatpay')) return 'wechatpay';
  return list.includes('dev') ? 'dev' : list[0];
}

// A phone: WeChat Pay's H5 flow (a page that opens the WeChat app) instead of a QR code to scan.
export function wantsH5() {
  return window.matchMedia('(max-width: 600px)').matches || window.matchMedia('(pointer: coarse)').matches;
}

// ---- the payment ----

// POST /reservations/{rid}/payment → the payment intent (the same one again for a repeat).
export function createPayment(rid, { provider, buyer, consignee, token }) {
  const body = { provider, buyer: { id_type: 'resident_id', ...buyer }, consignee };
  if (provider === 'wechatpay') body.scene = wantsH5() ? 'h5' : 'native';
  return api('POST', `/api/v1/reservations/${encodeURIComponent(rid)}/payment`, { body, token });
}

// The demo provider's "the buyer paid": the server signs and delivers the notification itself.
export function completeDevPayment(payment, token) {
  return api('POST', payment.client.complete_url, { token });
}

// The field a 400 names, and what it says about it: "buyer.id_number: id_number's check
// character does not match" and "consignee.district must be the 6-digit …" both name theirs.
export function fieldOf(message) {
  const m = /^((?:buyer|consignee)\.[a-z_]+|provider|scene|coupon)(?::\s*|\s+)(.*)$/s.exec(String(message || ''));
  if (!m) return null;
  const text = m[2] ? m[2][0].toUpperCase() + m[2].slice(1) : message;
  return { field: m[1], text };
}

// Confirm every `everyMs` until the order exists: handlers.order(order) on 200,
// handlers.ended(error) on 409 reservation_expired / 404 / 401 / 403, or once `deadlineMs` (local
// clock) has passed without an answer either way; handlers.waiting(error) on each 402 or
// network error. Returns {now(), stop()}.
export function pollConfirm(rid, paymentId, token, handlers, { everyMs = 1500, deadlineMs = Infinity } = {}) {
  let stopped = false;
  let timer = null;
  const once = async () => {
    if (stopped) return;
    if (Date.now() > deadlineMs) {
      stopped = true;
      handlers.ended(new ApiError(409, 'reservation_expired', 'no answer before the hold ended'));
      return;
    }
    try {
      const order = await api('POST', `/api/v1/reservations/${encodeURIComponent(rid)}/confirm`, { body: { payment_ref: paymentId }, token });
      if (stopped) return;
      stopped = true;
      handlers.order(order);
      return;
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      if (stopped) return;
      if (e.code === 'reservation_expired' || e.status === 404 || e.status === 401 || e.status === 403) {
        stopped = true;
        handlers.ended(e);
        return;
      }
      handlers.waiting?.(e); // 402 payment_required, or the network / server is briefly away
    }
    timer = setTimeout(once, everyMs);
  };
  once();
  return {
    now() {
      if (stopped) return;
      clearTimeout(timer);
      once();
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

// Draws `text` (WeChat Pay's code_url) as a QR code into a canvas, with the quiet zone.
export function drawQr(canvas, text, px = 240) {
  const qr = encodeQr(text, { ecc: 'M', border: 4 });
  const scale = Math.max(2, Math.floor(px / qr.size));
  canvas.width = canvas.height = qr.size * scale;
  const g = canvas.getContext('2d');
  g.fillStyle = '#fff';
  g.fillRect(0, 0, canvas.width, canvas.height);
  g.fillStyle = '#000';
  for (let y = 0; y < qr.size; y++) {
    for (let x = 0; x < qr.size; x++) if (qr.data[y][x]) g.fillRect(x * scale, y * scale, scale, scale);
  }
  canvas.dataset.qr = text;
  return canvas;
}
