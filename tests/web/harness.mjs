// harness: real servers for the browser tests — redis-server, silklive and an ffmpeg encoder on
// free loopback ports, each under `timeout` so nothing outlives a crashed test run.

import { spawn, execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

const LIFETIME_S = '900';
const children = [];

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function run(cmd, args, logPath) {
  const fd = openSync(logPath, 'a');
  // Own process group: kill() reaches the program itself, not only `timeout`.
  const child = spawn('timeout', ['--kill-after=5', LIFETIME_S, cmd, ...args], { stdio: ['ignore', fd, fd], detached: true });
  child.kill = (signal = 'SIGTERM') => {
    try {
      process.kill(-child.pid, signal);
    } catch {
      /* already gone */
    }
  };
  child.exited = new Promise((resolve) => child.once('exit', resolve));
  children.push(child);
  return child;
}

function portOpen(port) {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

export async function waitFor(what, fn, timeoutMs = 15000, everyMs = 100) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

async function httpReady(base) {
  await waitFor(`${base}/readyz`, async () => {
    try {
      return (await fetch(`${base}/readyz`)).ok;
    } catch {
      return false;
    }
  }, 20000);
}

// A cluster: one redis-server and any number of silklive nodes sharing it (and one secret), and
// optionally an nginx edge in front (deploy/nginx/edge.conf). Every child is stopped by stop().
export async function startCluster() {
  const silklive = process.env.SILKLIVE;
  if (!silklive) throw new Error('SILKLIVE must name the silklive binary');
  const dir = mkdtempSync(join(tmpdir(), 'silklive-web-'));
  const redisPort = await freePort();
  run('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], join(dir, 'redis.log'));
  await waitFor('redis-server', () => portOpen(redisPort));
  const secret = 'web-test-secret-' + Math.random().toString(16).slice(2);
  let nodes = 0;

  // A silklive node with the given modules (default all) and extra config text.
  async function node({ modules, config = '' } = {}) {
    const name = `node${++nodes}`;
    const httpPort = await freePort();
    const rtmpPort = await freePort();
    const configPath = join(dir, `${name}.conf`);
    writeFileSync(configPath, config);
    const args = ['serve', '--config', configPath, '--listen', `127.0.0.1:${httpPort}`, '--rtmp-listen', `127.0.0.1:${rtmpPort}`,
      '--redis', `redis://127.0.0.1:${redisPort}`, '--data-dir', join(dir, name), '--media-dir', join(dir, `${name}-media`), '--secret', secret];
    if (modules) args.push('--modules', modules);
    const proc = run(silklive, args, join(dir, `${name}.log`));
    const base = `http://127.0.0.1:${httpPort}`;
    await httpReady(base);
    return { name, base, httpPort, rtmpPort, proc, mediaDir: join(dir, `${name}-media`) };
  }

  // nginx with deploy/nginx/edge.conf and the given upstreams: {web, chat, media} → [base URLs].
  async function edge(upstreams) {
    const port = await freePort();
    const hostport = (b) => b.replace(/^http:\/\//, '');
    const ups = Object.entries(upstreams).map(([k, list]) => `upstream silklive_${k} { ${list.map((b) => `server ${hostport(b)};`).join(' ')} }`).join('\n  ');
    const conf = join(dir, 'nginx.conf');
    writeFileSync(conf, `daemon off;
${process.getuid() === 0 ? 'user root;' : ''}
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log ${dir}/nginx-access.log;
  client_body_temp_path ${dir}/nginx-body;
  proxy_temp_path ${dir}/nginx-proxy;
  proxy_cache_path ${dir}/nginx-cache keys_zone=silklive_hls:8m max_size=256m inactive=10m;
  limit_conn_zone $binary_remote_addr zone=silklive_conn:1m;
  limit_req_zone  $binary_remote_addr zone=silklive_api:1m rate=50r/s;
  ${ups}
  server {
    listen 127.0.0.1:${port};
    include ${new URL('../../deploy/nginx/edge.conf', import.meta.url).pathname};
  }
}
`);
    run('nginx', ['-c', conf, '-e', join(dir, 'nginx-error.log')], join(dir, 'nginx.log'));
    await waitFor('nginx', () => portOpen(port));
    return `http://127.0.0.1:${port}`;
  }

  const token = (role, sub, extra = []) => execFileSync(silklive, ['token', '--role', role, '--sub', sub, '--secret', secret, '--name', sub, ...extra]).toString().trim();

  async function call(base, method, path, body, tok, headers = {}) {
    const res = await fetch(base + path, {
      method,
      headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...(tok ? { authorization: `Bearer ${tok}` } : {}), ...headers },
      body: body ? JSON.stringify(body) : undefined,
    });
    const data = await res.json().catch(() => null);
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(data)}`);
    return data;
  }

  // Publishes a 640x360 test pattern with a tone, x264 + AAC, as a host's encoder would.
  function publish(rtmpPort, streamKey) {
    return run('ffmpeg', ['-nostdin', '-loglevel', 'error', '-re', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=25',
      '-f', 'lavfi', '-i', 'sine=frequency=440', '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-g', '50',
      '-c:a', 'aac', '-f', 'flv', `rtmp://127.0.0.1:${rtmpPort}/live/${streamKey}`], join(dir, 'ffmpeg.log'));
  }

  // SIGTERM in reverse start order (edge, encoders, silklive nodes, Redis), each waited for, so
  // silklive ends its playlists against a live Redis before the directory goes.
  async function stop() {
    for (const c of children.splice(0).reverse()) {
      if (c.exitCode !== null) continue;
      c.kill('SIGTERM');
      await Promise.race([c.exited, new Promise((r) => setTimeout(r, 12000))]);
    }
    // The servers' logs outlive the directory when LOG_DIR is set (ctest sets it): a failure in
    // CI can then be read afterwards.
    if (process.env.LOG_DIR) {
      mkdirSync(process.env.LOG_DIR, { recursive: true });
      for (const f of readdirSync(dir).filter((n) => n.endsWith('.log'))) copyFileSync(join(dir, f), join(process.env.LOG_DIR, `${basename(dir)}-${f}`));
    }
    if (!process.env.KEEP_TMP) rmSync(dir, { recursive: true, force: true });
  }

  return { dir, node, edge, token, call, publish, stop };
}

// One all-in-one node on its own Redis, with the helpers bound to it.
export async function startStack({ config = '' } = {}) {
  const cluster = await startCluster();
  const n = await cluster.node({ config });
  return {
    ...cluster,
    base: n.base,
    server: n.proc,
    call: (...args) => cluster.call(n.base, ...args),
    publish: (key) => cluster.publish(n.rtmpPort, key),
  };
}

process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

// One API call at base: {status, json (null when the body is not JSON), text, type}.
export async function apiAt(base, method, path, body, tok, headers = {}) {
  const res = await fetch(base + path, {
    method,
    headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...(tok ? { authorization: `Bearer ${tok}` } : {}), ...headers },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON */
  }
  return { status: res.status, json, text, type: res.headers.get('content-type') };
}

// The GB 11643 check character (ISO 7064 MOD 11-2) of an identity number's first 17 digits.
const ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
export function idCheckChar(first17) {
  const sum = [...first17].reduce((s, d, i) => s + Number(d) * ID_WEIGHTS[i], 0);
  return '10X98765432'[sum % 11];
}
