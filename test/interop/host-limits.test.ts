/**
 * The browser host under a client that does not read (issue 26 item 4): 10,000 calls sent on one socket whose
 * replies are never read. The host (a separate process, dist/main's host, so that its memory is its own) must
 * stay bounded in memory, keep answering a page load and another window's calls, and when the flooding socket
 * closes, the jobs it started must be cancelled as the app's Cancel does.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import * as http from 'node:http';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import type { JobEvent } from '../../src-shared/api';
import { ROOT, scratch } from '../helpers';

const HOST_MAIN = join(ROOT, 'dist', 'main', 'src-main', 'host', 'main.js');
const work = scratch('dw-host-limits-');
let child: ChildProcess;
let url: URL;
const data = work.path('data.raw');

/** The host process's resident memory now and at its peak (bytes), from /proc. */
function memory(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

function get(path: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: Number(url.port), path, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

function open(): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${url.port}/ws?token=${url.searchParams.get('token')}`, { origin: url.origin });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** A window that reads: calls by id, and every job event pushed to it. */
function reader(ws: WebSocket) {
  let next = 1_000_000;
  const waiting = new Map<number, (m: unknown) => void>();
  const events: JobEvent[] = [];
  const eventWaiters: Array<() => void> = [];
  ws.on('message', (data) => {
    const msg = JSON.parse(data.toString()) as { id?: number; event?: JobEvent };
    if (msg.event) {
      events.push(msg.event);
      for (const w of eventWaiters.splice(0)) w();
    } else if (msg.id !== undefined) waiting.get(msg.id)?.(msg);
  });
  return {
    events,
    call(method: string, args: unknown): Promise<{ result?: unknown; error?: { code: string; message: string } }> {
      const id = next++;
      return new Promise((resolve) => {
        waiting.set(id, resolve as (m: unknown) => void);
        ws.send(JSON.stringify({ id, method, args }));
      });
    },
    async until(pred: () => boolean): Promise<void> {
      while (!pred()) await new Promise<void>((r) => eventWaiters.push(r));
    },
  };
}

before(async () => {
  // 512 MiB of data (no zeros to skip), so that checksum jobs run long enough to be cancelled (16 share the cores).
  const chunk = randomBytes(1 << 20);
  const fd = openSync(data, 'w');
  for (let i = 0; i < 512; i++) writeSync(fd, chunk);
  closeSync(fd);
  assert.ok(existsSync(HOST_MAIN), `${HOST_MAIN} is missing: run node scripts/build.mjs first`);
  child = spawn(process.execPath, [HOST_MAIN, '--port', '0'], {
    env: { ...process.env, XDG_CONFIG_HOME: work.path('config') },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  url = await new Promise<URL>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /(http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]+)/.exec(out);
      if (m) resolve(new URL(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`the host exited (${code}): ${out}`)));
  });
});
after(() => {
  child?.kill('SIGTERM');
  work.cleanup();
});

test('10,000 unread calls: memory stays bounded, the page and other windows answer, and the closed socket\'s jobs are cancelled', async () => {
  const small = work.path('small.raw');
  writeFileSync(small, Buffer.alloc(1 << 20, 1));

  const observer = reader(await open());
  // Warm up the host (the first calls load the services) before taking its baseline.
  assert.ok((await observer.call('mapPicture', [small, 4096])).result);
  const before = memory(child.pid!);

  const flood = await open();
  // It never reads: its side stops taking bytes off the socket, so the host's replies back up.
  flood.pause();
  const CALLS = 10_000;
  const JOBS = 16;
  for (let id = 1; id <= CALLS; id++) {
    const msg =
      id <= JOBS
        ? { id, method: 'startJob', args: [{ kind: 'checksum', path: data }] }
        : { id, method: 'mapPicture', args: [small, 4096] };
    flood.send(JSON.stringify(msg));
  }

  // The jobs start: the observer sees their progress (every window sees every job's events).
  await observer.until(() => new Set(observer.events.map((e) => e.id)).size >= JOBS);
  const jobIds = [...new Set(observer.events.map((e) => e.id))];

  // Meanwhile the page loads and another window's call is answered.
  assert.equal(await get(`/?token=${url.searchParams.get('token')}`), 200);
  const answered = await observer.call('formats', []);
  assert.ok(Array.isArray(answered.result), JSON.stringify(answered));
  // Give the host a moment to take in what it will of the flood (it stops reading at once: the replies back up),
  // then measure. Short, so that the jobs (16 × 512 MiB to hash) are still running when the socket closes.
  await new Promise((r) => setTimeout(r, 300));
  const during = memory(child.pid!);

  const endedBeforeClose = new Set(observer.events.filter((e) => e.type !== 'progress').map((e) => e.id));
  const running = jobIds.filter((id) => !endedBeforeClose.has(id));
  assert.ok(running.length > 0, 'some jobs are still running when the socket closes');
  const flooded = new Promise<void>((resolve) => flood.once('close', () => resolve()));
  flood.terminate();
  await flooded;
  // Every job the closed socket started that was still running ends, cancelled.
  await observer.until(() => jobIds.every((id) => observer.events.some((e) => e.id === id && e.type !== 'progress')));
  for (const id of running) {
    const end = observer.events.find((e) => e.id === id && e.type !== 'progress')!;
    assert.equal(end.type, 'failed', `job ${id} should have been cancelled, it ended ${end.type}`);
    assert.equal(end.type === 'failed' && end.error.code, 'ECANCELLED');
  }
  const afterClose = memory(child.pid!);
  // Still serving after all that.
  assert.equal(await get(`/?token=${url.searchParams.get('token')}`), 200);
  assert.ok((await observer.call('mapPicture', [small, 16])).result);

  const mb = (n: number) => (n / 2 ** 20).toFixed(0);
  console.log(
    `# host memory: ${mb(before.rss)} MB before, ${mb(during.rss)} MB during 10,000 unread calls, peak ${mb(afterClose.peak)} MB; ` +
      `${running.length} of ${jobIds.length} jobs still running were cancelled on close`,
  );
  // Unbounded, the probe saw 61 → 878 MB. Bounded: a few MiB of replies waiting, 16 calls in flight, 16 jobs.
  assert.ok(afterClose.peak - before.rss < 160 * 2 ** 20, `peak ${mb(afterClose.peak)} MB from ${mb(before.rss)} MB`);
});

test('a window may run 16 jobs at once: the 17th is refused in plain words, and runs once one has ended', async () => {
  const ws = await open();
  const c = reader(ws);
  try {
    const ids: string[] = [];
    for (let i = 0; i < 16; i++) {
      const r = await c.call('startJob', [{ kind: 'checksum', path: data }]);
      assert.equal(typeof r.result, 'string', JSON.stringify(r));
      ids.push(r.result as string);
    }
    const refused = await c.call('startJob', [{ kind: 'checksum', path: data }]);
    assert.equal(refused.error?.code, 'EINVAL');
    assert.equal(refused.error?.message, 'startJob: 16 jobs are already running from this window; wait for one to end or cancel one');
    // Cancel one; once its end has been seen, there is room again.
    assert.deepEqual(await c.call('cancelJob', [ids[0]]), { id: 1_000_017, result: null });
    await c.until(() => c.events.some((e) => e.id === ids[0] && e.type === 'failed'));
    const again = await c.call('startJob', [{ kind: 'checksum', path: data }]);
    assert.equal(typeof again.result, 'string', JSON.stringify(again));
    ids.push(again.result as string);
    for (const id of ids) await c.call('cancelJob', [id]);
    await c.until(() => ids.every((id) => c.events.some((e) => e.id === id && e.type !== 'progress')));
  } finally {
    ws.close();
  }
});
