// api.test: the contract in the repo, held to the code. docs/openapi.json is a valid OpenAPI 3.1
// document (checked by a maintained validator), it names exactly the routes this build serves,
// silklive serves it at /api/v1/openapi.json, and every WebSocket message the hub sends in a real
// session (chat, pin, sale, moderation, video) matches the JSON Schema of its type.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Validator } from '@seriousme/openapi-schema-validator';
import Ajv2020 from 'ajv/dist/2020.js';
import WebSocket from 'ws';
import { startStack, waitFor } from './harness.mjs';

const ROOT = new URL('../../', import.meta.url).pathname;
const doc = JSON.parse(readFileSync(join(ROOT, 'docs/openapi.json'), 'utf8'));
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];
const CHANNEL = 'ar-tango';

let stack;
let tokens;

before(async () => {
  stack = await startStack({ config: '[transcode]\nladder =\n' });
  tokens = {
    admin: stack.token('admin', 'ops'),
    consul: stack.token('consul', 'consul-ar', ['--pavilion', 'AR']),
    alice: stack.token('viewer', 'alice'),
  };
});

after(async () => {
  await stack?.stop();
});

test('docs/openapi.json is a valid OpenAPI 3.1 document', async () => {
  const validator = new Validator();
  const result = await validator.validate(structuredClone(doc));
  assert.equal(result.valid, true, JSON.stringify(result.errors, null, 1));
  assert.equal(validator.version, '3.1');
});

test('it describes exactly the routes this build serves', () => {
  const served = new Set(execFileSync(process.env.SILKLIVE, ['routes']).toString().trim().split('\n'));
  assert.ok(served.size >= 30, `silklive routes listed only ${served.size}`);
  const described = new Set();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const m of METHODS) if (item[m]) described.add(`${m.toUpperCase()} ${path}`);
  }
  const undocumented = [...served].filter((r) => !described.has(r));
  const unserved = [...described].filter((r) => !served.has(r));
  assert.deepEqual(undocumented, [], 'served but not in docs/openapi.json');
  assert.deepEqual(unserved, [], 'in docs/openapi.json but not served');
});

test('silklive serves the same document at /api/v1/openapi.json', async () => {
  const res = await fetch(`${stack.base}/api/v1/openapi.json`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^application\/json/);
  assert.deepEqual(await res.json(), doc);
});

// The schemas of docs/schemas/ws, by message type and direction.
function loadSchemas() {
  const ajv = new Ajv2020({ allErrors: true, strict: true });
  const byType = { server: {}, client: {} };
  for (const dir of ['server', 'client']) {
    const base = join(ROOT, 'docs/schemas/ws', dir);
    for (const f of readdirSync(base).filter((n) => n.endsWith('.json'))) {
      const schema = JSON.parse(readFileSync(join(base, f), 'utf8'));
      ajv.addSchema(schema);
      byType[dir][f.replace(/\.json$/, '')] = schema.$id;
    }
  }
  return { ajv, byType };
}

// A WebSocket client that keeps every message it receives.
function client() {
  const ws = new WebSocket(`${stack.base.replace('http', 'ws')}/ws`, 'silklive.v1');
  const got = [];
  ws.on('message', (data) => got.push(JSON.parse(data.toString())));
  const opened = new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return { ws, got, opened, send: (m) => ws.send(JSON.stringify(m)) };
}

test('every WebSocket message the hub sends matches its JSON Schema', async () => {
  const { ajv, byType } = loadSchemas();
  const sent = [];
  const call = (...a) => stack.call(...a);
  await call('POST', '/api/v1/pavilions', { code: 'AR', name: { en: 'Argentina', zh: '阿根廷' }, currency: 'ARS', languages: ['es'] }, tokens.admin);
  const ch = await call('POST', '/api/v1/pavilions/AR/channels', { id: CHANNEL, title: { en: 'Tango night' } }, tokens.consul);
  await call('POST', '/api/v1/pavilions/AR/products', { sku: 'ar-mate-1', title: { en: 'Yerba mate, 1 kg' }, price: { amount_minor: 500000, currency: 'ARS' }, price_cny_fen: 4900, stock_location: 'overseas' }, tokens.consul);

  const alice = client();
  const anon = client();
  await Promise.all([alice.opened, anon.opened]);
  const say = (c, m) => {
    sent.push(m);
    c.send(m);
  };
  say(alice, { type: 'join', channel: CHANNEL, token: tokens.alice });
  say(anon, { type: 'join', channel: CHANNEL });
  await waitFor('joined', () => alice.got.some((m) => m.type === 'joined') && anon.got.some((m) => m.type === 'joined'));
  say(alice, { type: 'chat', text: '¿Hay envío a Shanghái? 到上海吗？' });
  say(alice, { type: 'ping' });
  alice.ws.send('{"type":"dance"}'); // a bad frame: answered with error
  anon.ws.send(JSON.stringify({ type: 'chat', text: 'anonymous' })); // refused: no token
  await call('POST', `/api/v1/channels/${CHANNEL}/pin`, { sku: 'ar-mate-1' }, tokens.consul);
  const sale = await call('POST', '/api/v1/sales', { channel: CHANNEL, sku: 'ar-mate-1', quantity: 5, price_cny_fen: 3900, per_user_limit: 2, hold_ttl_s: 60 }, tokens.consul);
  await waitFor('the sale active', async () => (await call('GET', `/api/v1/sales/${sale.id}`)).state === 'active');
  await call('POST', `/api/v1/sales/${sale.id}/reservations`, { qty: 1 }, tokens.alice, { 'idempotency-key': 'k1' });
  await call('DELETE', `/api/v1/channels/${CHANNEL}/pin`, null, tokens.consul);
  await waitFor('the chat message', () => alice.got.some((m) => m.type === 'chat'));
  const message = alice.got.find((m) => m.type === 'chat');
  await call('POST', `/api/v1/channels/${CHANNEL}/moderation`, { action: 'delete', message_id: message.id }, tokens.consul);
  const encoder = stack.publish(ch.stream_key);
  await waitFor('the stream event', () => anon.got.some((m) => m.type === 'stream' && m.event === 'publish'), 40000);
  encoder.kill('SIGTERM');
  await call('POST', `/api/v1/sales/${sale.id}/stop`, null, tokens.consul);
  await waitFor('the moderation and sale events', () => anon.got.some((m) => m.type === 'moderation') && anon.got.some((m) => m.type === 'sale' && m.event === 'ended'));
  // a reconnect that recovers with `since` gets the history in `joined`
  const late = client();
  await late.opened;
  say(late, { type: 'join', channel: CHANNEL, token: tokens.alice, since: message.id });
  await waitFor('the recovery', () => late.got.some((m) => m.type === 'joined'));
  for (const c of [alice, anon, late]) c.ws.close();

  const seen = new Set();
  for (const m of [...alice.got, ...anon.got, ...late.got]) {
    const id = byType.server[m.type];
    assert.ok(id, `no schema for server message type ${m.type}: ${JSON.stringify(m)}`);
    const valid = ajv.validate(id, m);
    assert.ok(valid, `${m.type} does not match its schema: ${ajv.errorsText()}\n${JSON.stringify(m)}`);
    seen.add(m.type);
  }
  for (const type of ['joined', 'chat', 'pong', 'error', 'pin', 'unpin', 'sale', 'moderation', 'stream']) {
    assert.ok(seen.has(type), `the session never received a ${type} message`);
  }
  const joined = late.got.find((m) => m.type === 'joined');
  assert.ok(joined.history.length > 0, 'the recovery replayed nothing');
  for (const m of sent) {
    assert.ok(ajv.validate(byType.client[m.type], m), `client ${m.type}: ${ajv.errorsText()}`);
  }
});
