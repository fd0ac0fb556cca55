import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inflateRawSync, inflateSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { DeflatePool } from '../../src-main/block/deflate-pool';
import { DiskError } from '../../src-main/block/errors';

// The oracle is node:zlib's inflate: every block must come back exactly as it went in.
function block(i: number, size: number): Buffer {
  const b = Buffer.alloc(size, i & 0xff);
  b.set(randomBytes(size / 8), (i * 4096) % (size / 2));
  return b;
}

test('DeflatePool compresses many blocks at once on its workers; each inflates back to its input', async () => {
  const pool = new DeflatePool(65536, true, { windowBits: 12, memLevel: 9 }, 2);
  // More blocks than slots (2 workers x 4): later ones wait for a slot given back.
  const inputs = Array.from({ length: 40 }, (_, i) => block(i, 65536));
  await Promise.all(
    inputs.map(async (input) => {
      const packed = await pool.compress(input);
      assert.ok(packed, 'a half-constant block shrinks');
      const copy = Buffer.from(packed.data); // the bytes are valid until release
      packed.release();
      assert.ok(inflateRawSync(copy).equals(input));
    }),
  );
});

test('DeflatePool: a block that does not shrink comes back whole (a little larger), and the zlib format when asked', async () => {
  const pool = new DeflatePool(65536, false, {}, 1);
  const noise = randomBytes(65536);
  const grown = await pool.compress(noise);
  assert.ok(grown && grown.data.length > 65536, 'random data grows by deflate\'s few bytes');
  assert.ok(inflateSync(Buffer.from(grown.data)).equals(noise));
  grown.release();
  const input = block(3, 65536);
  const packed = await pool.compress(input);
  assert.ok(packed && packed.data.length < 65536);
  assert.ok(inflateSync(Buffer.from(packed.data)).equals(input));
  packed.release();
  // A block shorter than the pool's block size (an image's last, partial grain).
  const short = Buffer.alloc(5000, 9);
  const p2 = await pool.compress(short);
  assert.ok(p2 && inflateSync(Buffer.from(p2.data)).equals(short));
  p2.release();
});

test('DeflatePool: a worker that stops fails the work under way and after it with a DiskError', async () => {
  const pool = new DeflatePool(65536, true, {}, 1);
  const workers = (pool as unknown as { workers: Array<{ terminate(): Promise<number> }> }).workers;
  await workers[0].terminate();
  await assert.rejects(pool.compress(block(1, 65536)), (err: unknown) => err instanceof DiskError && /compression worker/.test(err.message));
});

test('DeflatePool: an idle pool does not keep the process alive', () => {
  const code = `
    require(${JSON.stringify(require.resolve('tsx/cjs'))});
    const { deflatePool } = require(${JSON.stringify(require.resolve('../../src-main/block/deflate-pool'))});
    deflatePool(65536, true, {}).compress(Buffer.alloc(65536, 1)).then((p) => { p.release(); console.log('done', p.data.length); });`;
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 20000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^done \d+/);
});
