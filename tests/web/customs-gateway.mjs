// customs-gateway: a local stand-in for the China customs cross-border gateway that silklive
// declares paid orders to (docs/design/payments.md "Customs outbox"). It takes a CEB311Message
// (POST, application/xml, Idempotency-Key = the declaration's guid), checks its fields and its
// arithmetic (acturalPaid = goodsValue + freight + taxTotal − discount, each line's totalPrice =
// qty × price, the lines add up to goodsValue), records it once per guid, and answers a
// CEB312Message (OrderReturn with returnStatus). A guid seen before gets the answer it got the
// first time: the gateway declares an order once however often it is asked.
//
// Modes (gw.mode = ...): 'accept' (120 入库), 'async' (2: accepted, the final receipt comes later,
// see receipt()), 'refuse' (100 退单 with gw.refuseInfo), 'error' (HTTP 500), 'garbage' (200 with
// a body that is not XML), 'hang' (never answers, records nothing), 'late' (records, answers 120
// after gw.lateMs). gw.down() closes the port (connection refused) and every open connection;
// gw.up() opens it again on the same port.

import { createServer } from 'node:http';
import { createHmac, randomUUID } from 'node:crypto';
import { XMLParser } from 'fast-xml-parser';

const parser = new XMLParser({ removeNSPrefix: true, parseTagValue: false, ignoreAttributes: false, attributeNamePrefix: '@' });

// "12.34" -> 1234 fen; NaN for anything else (customs writes yuan with two decimals).
export function fen(text) {
  const m = /^(-?)(\d+)\.(\d\d)$/.exec(String(text ?? ''));
  if (!m) return NaN;
  return (m[1] ? -1 : 1) * (Number(m[2]) * 100 + Number(m[3]));
}

const WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
function idNumberValid(id) {
  if (!/^\d{17}[\dX]$/.test(id)) return false;
  const sum = [...id.slice(0, 17)].reduce((s, d, i) => s + Number(d) * WEIGHTS[i], 0);
  return '10X98765432'[sum % 11] === id[17];
}

const HEAD_FIELDS = ['guid', 'appType', 'appTime', 'appStatus', 'orderType', 'orderNo', 'ebpCode', 'ebpName', 'ebcCode', 'ebcName',
  'goodsValue', 'freight', 'discount', 'taxTotal', 'acturalPaid', 'currency', 'buyerRegNo', 'buyerName', 'buyerTelephone',
  'buyerIdType', 'buyerIdNumber', 'payCode', 'payName', 'payTransactionId', 'consignee', 'consigneeTelephone', 'consigneeAddress',
  'consigneeDitrict'];
const LINE_FIELDS = ['gnum', 'itemNo', 'itemName', 'unit', 'qty', 'price', 'totalPrice', 'currency', 'country'];

// The declaration in a CEB311Message, and what is wrong with it ([] when nothing).
export function checkDeclaration(xml, idempotencyKey) {
  const problems = [];
  let doc;
  try {
    doc = parser.parse(xml, true);
  } catch (e) {
    return { problems: [`not XML: ${e.message}`] };
  }
  const msg = doc.CEB311Message;
  const order = msg?.Order;
  const head = order?.OrderHead;
  if (!head) return { problems: ['no CEB311Message/Order/OrderHead'] };
  const lines = [].concat(order.OrderList ?? []);
  for (const f of HEAD_FIELDS) if (typeof head[f] !== 'string' || head[f] === '') problems.push(`OrderHead/${f} missing`);
  if (msg['@guid'] !== head.guid) problems.push('the message guid is not the OrderHead guid');
  if (idempotencyKey !== head.guid) problems.push(`Idempotency-Key ${idempotencyKey} is not the guid ${head.guid}`);
  if (!/^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$/.test(head.guid ?? '')) problems.push('guid is not an upper-case UUID');
  if (head.orderType !== 'I') problems.push('orderType must be I');
  if (head.currency !== '142') problems.push('currency must be 142');
  if (head.buyerIdType !== '1') problems.push('buyerIdType must be 1');
  if (!/^\d{14}$/.test(head.appTime ?? '')) problems.push('appTime must be yyyyMMddHHmmss');
  if (!idNumberValid(head.buyerIdNumber ?? '')) problems.push('buyerIdNumber is not a valid identity number');
  const [goods, freight, discount, tax, paid] = ['goodsValue', 'freight', 'discount', 'taxTotal', 'acturalPaid'].map((f) => fen(head[f]));
  if ([goods, freight, discount, tax, paid].some(Number.isNaN)) problems.push('amounts must be yuan with two decimals');
  else if (paid !== goods + freight + tax - discount) problems.push(`acturalPaid ${head.acturalPaid} is not goodsValue + freight + taxTotal − discount`);
  if (lines.length === 0) problems.push('no OrderList');
  let sum = 0;
  lines.forEach((l, i) => {
    for (const f of LINE_FIELDS) if (typeof l[f] !== 'string' || l[f] === '') problems.push(`OrderList ${i + 1}/${f} missing`);
    if (l.gnum !== String(i + 1)) problems.push(`OrderList ${i + 1}: gnum ${l.gnum}`);
    if (!/^\d{3}$/.test(l.unit ?? '') || !/^\d{3}$/.test(l.country ?? '')) problems.push(`OrderList ${i + 1}: unit and country must be customs' 3-digit codes`);
    const total = fen(l.totalPrice);
    if (total !== Number(l.qty) * fen(l.price)) problems.push(`OrderList ${i + 1}: totalPrice is not qty × price`);
    sum += total;
  });
  if (lines.length && sum !== goods) problems.push('the lines do not add up to goodsValue');
  return { problems, head, lines };
}

function chinaTime(ms = Date.now()) {
  return new Date(ms + 8 * 3600 * 1000).toISOString().replace(/[-:T]/g, '').slice(0, 14);
}

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

// A CEB312Message with one OrderReturn.
export function receiptXml({ guid, status, info = '', orderNo = '', ebpCode = '', ebcCode = '', time = chinaTime() }) {
  return `<?xml version="1.0" encoding="UTF-8"?>
<ceb:CEB312Message guid="${randomUUID().toUpperCase()}" version="1.0" xmlns:ceb="http://www.chinaport.gov.cn/ceb">
  <ceb:OrderReturn>
    <ceb:guid>${esc(guid)}</ceb:guid>
    <ceb:customsCode>2244</ceb:customsCode>
    <ceb:ebpCode>${esc(ebpCode)}</ceb:ebpCode>
    <ceb:ebcCode>${esc(ebcCode)}</ceb:ebcCode>
    <ceb:orderNo>${esc(orderNo)}</ceb:orderNo>
    <ceb:returnStatus>${esc(status)}</ceb:returnStatus>
    <ceb:returnTime>${esc(time)}</ceb:returnTime>
    <ceb:returnInfo>${esc(info)}</ceb:returnInfo>
  </ceb:OrderReturn>
</ceb:CEB312Message>
`;
}

// POST a signed final receipt to silklive's receipts route; {status, text, json}.
export async function sendReceipt(base, secret, fields, { signature } = {}) {
  const body = receiptXml(fields);
  const sig = signature ?? createHmac('sha256', secret).update(body).digest('hex');
  const res = await fetch(`${base}/api/v1/customs/receipts`, { method: 'POST', headers: { 'content-type': 'application/xml', 'x-silklive-signature': sig }, body });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, text, json };
}

export async function startGateway({ port = 0, log } = {}) {
  const gw = {
    mode: 'accept',
    refuseInfo: '订购人身份信息校验未通过',
    lateMs: 3000,
    requests: [], // every POST: {at, guid, orderNo, problems, answered: status|null}
    declarations: new Map(), // guid -> {orderNo, head, lines, xml, status, info, posts}
    byOrder: new Map(), // orderNo -> Set of guids
    sockets: new Set(),
    hanging: new Set(),
    port: 0,
    url: '',
  };
  const answer = (res, status, body, type = 'application/xml; charset=utf-8') => {
    if (res.writableEnded || res.destroyed) return;
    res.writeHead(status, { 'content-type': type });
    res.end(body);
  };
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const xml = Buffer.concat(chunks).toString('utf8');
      const rec = { at: Date.now(), method: req.method, path: req.url, contentType: req.headers['content-type'], idempotencyKey: req.headers['idempotency-key'], mode: gw.mode, answered: null };
      gw.requests.push(rec);
      if (req.method !== 'POST') return answer(res, 405, 'POST only', 'text/plain');
      const { problems, head, lines } = checkDeclaration(xml, req.headers['idempotency-key']);
      if (!/^application\/xml/.test(req.headers['content-type'] ?? '')) problems.push(`Content-Type ${req.headers['content-type']}`);
      Object.assign(rec, { guid: head?.guid, orderNo: head?.orderNo, problems });
      log?.(`gateway: ${gw.mode} ${head?.orderNo} ${head?.guid} ${problems.join('; ')}`);
      if (gw.mode === 'hang') {
        gw.hanging.add(res);
        res.on('close', () => gw.hanging.delete(res));
        return;
      }
      if (gw.mode === 'error') {
        rec.answered = 500;
        return answer(res, 500, 'internal error', 'text/plain');
      }
      if (gw.mode === 'garbage') {
        rec.answered = 200;
        return answer(res, 200, '<html>maintenance</html', 'text/html');
      }
      let d = head && gw.declarations.get(head.guid);
      if (d) {
        d.posts++;
        if (d.xml !== xml && d.head.appTime === head.appTime) d.changed = true; // the same guid must carry the same declaration
      } else if (head) {
        const refused = problems.length > 0 || gw.mode === 'refuse';
        d = {
          orderNo: head.orderNo, head, lines, xml, posts: 1,
          status: refused ? '100' : gw.mode === 'async' ? '2' : '120',
          info: problems.length ? `校验未通过: ${problems.join('; ')}` : gw.mode === 'refuse' ? gw.refuseInfo : gw.mode === 'async' ? '已接收' : '入库成功',
        };
        gw.declarations.set(head.guid, d);
        if (!gw.byOrder.has(head.orderNo)) gw.byOrder.set(head.orderNo, new Set());
        gw.byOrder.get(head.orderNo).add(head.guid);
      } else {
        rec.answered = 400;
        return answer(res, 400, 'not a CEB311Message', 'text/plain');
      }
      const body = receiptXml({ guid: head.guid, status: d.status, info: d.info, orderNo: head.orderNo, ebpCode: head.ebpCode, ebcCode: head.ebcCode });
      rec.answered = 200;
      if (gw.mode === 'late') setTimeout(() => answer(res, 200, body), gw.lateMs);
      else answer(res, 200, body);
    });
  });
  server.keepAliveTimeout = 60000;
  server.on('connection', (s) => {
    gw.sockets.add(s);
    s.on('close', () => gw.sockets.delete(s));
  });
  const listen = (p) => new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(p, '127.0.0.1', () => {
      server.off('error', reject);
      resolve(server.address().port);
    });
  });
  gw.port = await listen(port);
  gw.url = `http://127.0.0.1:${gw.port}/ceb/order`;
  gw.down = async () => {
    await new Promise((resolve) => {
      server.close(() => resolve());
      for (const s of gw.sockets) s.destroy();
    });
  };
  gw.up = async () => {
    await listen(gw.port);
  };
  // The final receipt of a declaration the gateway answered 'async' for: it decides now.
  gw.decide = (guid, status, info = status === '100' ? gw.refuseInfo : '入库成功') => {
    const d = gw.declarations.get(guid);
    if (d) Object.assign(d, { status, info });
    return receiptXml({ guid, status, info, orderNo: d?.orderNo ?? '' });
  };
  gw.postsFor = (guid) => gw.requests.filter((r) => r.guid === guid).length;
  gw.close = async () => {
    for (const res of gw.hanging) res.destroy();
    if (server.listening) await gw.down();
  };
  return gw;
}
