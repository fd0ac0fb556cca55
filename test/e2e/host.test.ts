/**
 * The browser host's doorways: the page and the WebSocket need the launch token and our own origin,
 * static files stay inside the renderer folder, and every call is validated and answered with a plain
 * error DTO. The contract's answers are checked against qemu-img where it has an opinion.
 */
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import type { ImageInfo, MapPicture } from '../../src-shared/api';
import { startHost, type Host } from '../../src-main/host/server';
import { must, qemuIo, scratch } from '../helpers';
import { SocketClient } from './socket-client';

let host: Host;
let origin: string;
let token: string;
const work = scratch('dw-e2e-host-');

before(async () => {
  host = await startHost({ port: 0 });
  const u = new URL(host.url);
  origin = u.origin;
  token = u.searchParams.get('token') ?? '';
});
after(async () => {
  await host?.close();
  work.cleanup();
});

/** A raw GET, so that Host headers and odd paths go out exactly as written. */
function get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: host.port, path, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Opens a socket; resolves with it, or rejects with the HTTP status the handshake was refused with. */
function connect(query: string, wsOrigin = origin): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${host.port}/ws${query}`, { origin: wsOrigin });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`refused with ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

test('the page needs the launch token; the answer carries a strict CSP', async () => {
  assert.equal((await get('/')).status, 403);
  assert.equal((await get('/?token=' + '0'.repeat(64))).status, 403);
  assert.equal((await get('/?token=' + token.slice(0, 10))).status, 403);
  const ok = await get('/?token=' + token);
  assert.equal(ok.status, 200);
  assert.match(ok.body, /<div id="app">/);
  const csp = String(ok.headers['content-security-policy']);
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self'(;|$)/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/);
  assert.equal(ok.headers['referrer-policy'], 'no-referrer');
  assert.equal(ok.headers['cache-control'], 'no-store');
});

test('the first load sets the token as a cookie (HttpOnly, SameSite=Strict, Path=/); later loads present the cookie', async () => {
  const first = await get('/?token=' + token);
  assert.equal(first.status, 200);
  const set = first.headers['set-cookie'];
  assert.ok(set && set.length === 1, `one cookie is set: ${JSON.stringify(set)}`);
  const parts = set[0].split(';').map((p) => p.trim());
  assert.equal(parts[0], `diskwright-${host.port}=${token}`);
  assert.deepEqual(parts.slice(1).map((p) => p.toLowerCase()).sort(), ['httponly', 'path=/', 'samesite=strict']);

  const cookie = { Cookie: parts[0] };
  const again = await get('/', cookie);
  assert.equal(again.status, 200, 'a reload without the token in the address opens with the cookie');
  assert.equal(again.headers['set-cookie'], undefined, 'the cookie is set once, by the load that brought the token');
  assert.match(again.body, /<div id="app">/);
  // Without either, or with a wrong one, or with another port's cookie: refused.
  assert.equal((await get('/')).status, 403);
  assert.equal((await get('/', { Cookie: `diskwright-${host.port}=${'0'.repeat(64)}` })).status, 403);
  assert.equal((await get('/', { Cookie: `diskwright-${host.port + 1}=${token}` })).status, 403);
  assert.equal((await get('/index.html', { Cookie: `other=1; diskwright-${host.port}=${token}x` })).status, 403);
  assert.equal((await get('/index.html', { Cookie: `other=1; diskwright-${host.port}=${token}` })).status, 200);
});

test('the socket authenticates by the cookie, and still checks Origin and Host', async () => {
  const withCookie = (cookie: string, wsOrigin = origin, hostHeader?: string) =>
    new Promise<WebSocket>((resolve, reject) => {
      const headers: Record<string, string> = { Cookie: cookie };
      if (hostHeader) headers.Host = hostHeader;
      const ws = new WebSocket(`ws://127.0.0.1:${host.port}/ws`, { origin: wsOrigin, headers });
      ws.once('open', () => resolve(ws));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`refused with ${res.statusCode}`)));
      ws.once('error', reject);
    });
  const good = `diskwright-${host.port}=${token}`;
  await assert.rejects(withCookie(`diskwright-${host.port}=${'a'.repeat(64)}`), /refused with 403/);
  await assert.rejects(withCookie(good, 'http://attacker.example'), /refused with 403/);
  await assert.rejects(withCookie(good, origin, `attacker.example:${host.port}`), /refused with 403/);
  const c = new SocketClient(await withCookie(good));
  try {
    const formats = await c.result<unknown[]>('formats', []);
    assert.ok(formats.length > 0);
  } finally {
    c.close();
  }
});

test('other host names, methods and paths outside the renderer folder are refused', async () => {
  assert.equal((await get('/?token=' + token, { Host: `attacker.example:${host.port}` })).status, 421);
  assert.equal((await get('/../../package.json')).status, 404);
  assert.equal((await get('/%2e%2e/%2e%2e/package.json')).status, 404);
  assert.equal((await get('/assets/../../../package.json')).status, 404);
  assert.equal((await get('/nothing-here.js')).status, 404);
  const html = await get('/?token=' + token);
  const script = /src="\.\/(assets\/[^"]+\.js)"/.exec(html.body)?.[1];
  assert.ok(script, 'the page names its script');
  const js = await get('/' + script);
  assert.equal(js.status, 200);
  assert.match(String(js.headers['content-type']), /javascript/);
});

test('the socket needs the token (or its cookie) and our own origin', async () => {
  await assert.rejects(connect(''), /refused with 403/);
  await assert.rejects(connect('?token=' + 'f'.repeat(64)), /refused with 403/);
  await assert.rejects(connect('?token=' + token, 'http://attacker.example'), /refused with 403/);
  await assert.rejects(connect('?token=' + token, `http://127.0.0.1:${host.port + 1}`), /refused with 403/);
  const ws = await connect('?token=' + token);
  ws.close();
});

test('calls are validated and fail with a plain DiskErrorDto', async () => {
  const c = new SocketClient(await connect('?token=' + token));
  try {
    const missing = work.path('missing.qcow2');
    assert.deepEqual(await c.call('inspect', [missing]), { id: 1, error: { code: 'ENOENT', message: `${missing}: no such file`, path: missing } });
    const bad = [
      ['inspect', ['']],
      ['inspect', ['a\0b']],
      ['inspect', []],
      ['inspect', 'not a list'],
      ['mapPicture', [missing, 0]],
      ['mapPicture', [missing, 4097]],
      ['mapPicture', [missing, 1.5]],
      ['createOptions', ['floppy']],
      ['startJob', [{ kind: 'format-my-disk', path: '/' }]],
      ['startJob', [{ kind: 'map', path: missing, buckets: 8, extra: true }]],
      ['constructor', []],
      ['__proto__', []],
      ['onJobEvent', []],
    ] as const;
    for (const [method, args] of bad) {
      const r = await c.call(method, args);
      assert.ok('error' in r, `${method} ${JSON.stringify(args)} should fail`);
      assert.equal(r.error.code, 'EINVAL', `${method} ${JSON.stringify(args)}: ${r.error.message}`);
      assert.doesNotMatch(r.error.message, /ZodError|TypeError|\n/);
    }
    const opts = await c.call('createOptions', ['raw']);
    assert.ok('result' in opts && Array.isArray(opts.result));
    const picked = await c.call('pickImage', []);
    assert.ok('result' in picked && picked.result === null, 'no native dialog in the browser host');
  } finally {
    c.ws.close();
  }
});

test('a malformed message closes the socket', async () => {
  const ws = await connect('?token=' + token);
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  ws.send('{not json');
  assert.equal(await closed, 1008);
});

test('listDir, mapPicture and a map job answer what the folder and qemu-img say', async () => {
  const image = work.path('disk.raw');
  must('qemu-img', ['create', '-f', 'raw', image, '16M']);
  qemuIo(image, 'raw', ['write -P 0x5a 2M 3M', 'write -P 0x5b 12M 64k']);
  const oracle = JSON.parse(must('qemu-img', ['map', '--output=json', '-f', 'raw', image]).stdout) as Array<{ length: number; data: boolean }>;
  const oracleData = oracle.filter((e) => e.data).reduce((n, e) => n + e.length, 0);

  const c = new SocketClient(await connect('?token=' + token));
  try {
    const listing = await c.call('listDir', [work.dir]);
    assert.ok('result' in listing);
    const entries = (listing.result as { entries: Array<{ name: string; kind: string; size?: number }> }).entries;
    assert.deepEqual(entries.find((e) => e.name === 'disk.raw'), { name: 'disk.raw', path: image, kind: 'file', size: 16 * 1024 * 1024 });

    const pic = await c.call('mapPicture', [image, 16]);
    assert.ok('result' in pic, JSON.stringify(pic));
    const p = pic.result as MapPicture;
    assert.equal(p.virtualSize, 16 * 1024 * 1024);
    assert.equal(p.buckets.length, 16);
    assert.equal(p.buckets.reduce((n, b) => n + b.data, 0), oracleData);
    assert.deepEqual(p.buckets[2], { data: 1024 * 1024, zero: 0, unallocated: 0 });

    const started = await c.call('startJob', [{ kind: 'map', path: image, buckets: 4 }]);
    assert.ok('result' in started && typeof started.result === 'string');
    const id = started.result;
    await c.until((ev) => ev.some((e) => e.id === id && (e.type === 'done' || e.type === 'failed')));
    const done = c.events.find((e) => e.id === id && e.type === 'done');
    assert.ok(done && done.type === 'done', JSON.stringify(c.events));
    assert.equal((done.result as MapPicture).buckets.reduce((n, b) => n + b.data, 0), oracleData);
  } finally {
    c.ws.close();
  }
});

test('a backing file outside the image folder is not followed: the image is shown and the chain says why', async () => {
  const base = work.path('outside-base.qcow2');
  const inner = work.path('inner');
  const overlay = `${inner}/overlay.qcow2`;
  must('mkdir', ['-p', inner]);
  must('qemu-img', ['create', '-f', 'qcow2', base, '8M']);
  must('qemu-img', ['create', '-f', 'qcow2', '-b', '../outside-base.qcow2', '-F', 'qcow2', overlay]);
  const c = new SocketClient(await connect('?token=' + token));
  try {
    const r = await c.call('inspect', [overlay]);
    assert.ok('result' in r, JSON.stringify(r));
    const info = r.result as ImageInfo;
    assert.equal(info.format, 'qcow2');
    assert.equal(info['virtual-size'], 8 * 1024 * 1024);
    assert.equal(info['backing-filename'], '../outside-base.qcow2');
    assert.equal(info['backing-image'], undefined);
    assert.equal(info['backing-error']?.code, 'EOUTSIDE');
    // The map is the overlay's own (nothing allocated), not an error: the chain is cut where it was refused.
    const pic = await c.call('mapPicture', [overlay, 8]);
    assert.ok('result' in pic, JSON.stringify(pic));
    const oracle = JSON.parse(
      must('qemu-img', ['map', '--output=json', `json:${JSON.stringify({ driver: 'qcow2', file: { driver: 'file', filename: overlay }, backing: null })}`]).stdout,
    ) as Array<{ present: boolean; length: number }>;
    assert.ok(oracle.every((e) => !e.present));
    assert.deepEqual((pic.result as MapPicture).buckets, Array.from({ length: 8 }, () => ({ data: 0, zero: 0, unallocated: 1024 * 1024 })));
  } finally {
    c.ws.close();
  }
});
