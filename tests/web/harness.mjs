// harness: real servers for the browser tests — redis-server, silklive and an ffmpeg encoder on
// free loopback ports, each under `timeout` so nothing outlives a crashed test run.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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

// One stack: redis-server, silklive with every module (config: text of an extra config file),
// and helpers to call its API.
export async function startStack({ config = '' } = {}) {
  const silklive = process.env.SILKLIVE;
  if (!silklive) throw new Error('SILKLIVE must name the silklive binary');
  const dir = mkdtempSync(join(tmpdir(), 'silklive-web-'));
  const redisPort = await freePort();
  run('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], join(dir, 'redis.log'));
  await waitFor('redis-server', () => portOpen(redisPort));
  const httpPort = await freePort();
  const rtmpPort = await freePort();
  const secret = 'web-test-secret-' + Math.random().toString(16).slice(2);
  const configPath = join(dir, 'silklive.conf');
  writeFileSync(configPath, config);
  const server = run(silklive, ['serve', '--config', configPath, '--listen', `127.0.0.1:${httpPort}`, '--rtmp-listen', `127.0.0.1:${rtmpPort}`,
    '--redis', `redis://127.0.0.1:${redisPort}`, '--data-dir', join(dir, 'data'), '--media-dir', join(dir, 'media'), '--secret', secret],
  join(dir, 'silklive.log'));
  const base = `http://127.0.0.1:${httpPort}`;
  await waitFor('silklive /readyz', async () => {
    try {
      return (await fetch(`${base}/readyz`)).ok;
    } catch {
      return false;
    }
  }, 20000);

  const token = (role, sub, extra = []) => execFileSync(silklive, ['token', '--role', role, '--sub', sub, '--secret', secret, '--name', sub, ...extra]).toString().trim();

  async function call(method, path, body, tok, headers = {}) {
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
  function publish(streamKey) {
    return run('ffmpeg', ['-nostdin', '-loglevel', 'error', '-re', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=25',
      '-f', 'lavfi', '-i', 'sine=frequency=440', '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-g', '50',
      '-c:a', 'aac', '-f', 'flv', `rtmp://127.0.0.1:${rtmpPort}/live/${streamKey}`], join(dir, 'ffmpeg.log'));
  }

  // SIGTERM in reverse start order (encoders, silklive, Redis), each waited for, so silklive
  // ends its playlists against a live Redis before the directory goes.
  async function stop() {
    for (const c of children.splice(0).reverse()) {
      if (c.exitCode !== null) continue;
      c.kill('SIGTERM');
      await Promise.race([c.exited, new Promise((r) => setTimeout(r, 12000))]);
    }
    if (!process.env.KEEP_TMP) rmSync(dir, { recursive: true, force: true });
  }

  return { base, dir, token, call, publish, stop, server };
}

process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});
