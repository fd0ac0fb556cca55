import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deflateRawSync, deflateSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { Inflater } from '../../src-main/block/inflate';

// The oracle is node:zlib's own compressor; the inflater must give back exactly what went in.
function block(seed: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  b.set(randomBytes(size / 4), (seed * 1024) % (size / 2)); // part random, part zeros
  b.fill(seed & 0xff, size - 4096);
  return b;
}

test('Inflater gives back raw-deflate blocks into the caller\'s buffer, one stream reused across blocks', () => {
  const inf = new Inflater(true);
  for (let i = 0; i < 20; i++) {
    const plain = block(i, 65536);
    const out = new Uint8Array(65536);
    assert.equal(inf.inflate(deflateRawSync(plain, { windowBits: 12 }), out), 65536);
    assert.ok(Buffer.from(out).equals(plain), `block ${i}`);
  }
  // This Node has the handle node:zlib itself uses, so the fast path is what ran.
  assert.equal(inf.reusesStream, true);
});

test('Inflater fills the buffer and ignores what follows it (qcow2 pads a compressed cluster to a sector)', () => {
  const inf = new Inflater(true);
  const plain = block(3, 65536);
  const packed = Buffer.concat([deflateRawSync(plain), randomBytes(300)]);
  const out = new Uint8Array(65536);
  assert.equal(inf.inflate(packed, out), 65536);
  assert.ok(Buffer.from(out).equals(plain));
  // A block that holds more than the buffer takes: the buffer is filled with its start.
  const small = new Uint8Array(4096);
  assert.equal(inf.inflate(deflateRawSync(plain), small), 4096);
  assert.ok(Buffer.from(small).equals(plain.subarray(0, 4096)));
});

test('Inflater reports a short block by the bytes it produced, and bad data as -1, then works again', () => {
  const inf = new Inflater(true);
  const out = new Uint8Array(65536);
  assert.equal(inf.inflate(deflateRawSync(Buffer.alloc(1000, 7)), out), 1000);
  const bad = Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
  assert.equal(inf.inflate(bad, out), -1);
  const plain = block(9, 65536);
  assert.equal(inf.inflate(deflateRawSync(plain), out), 65536);
  assert.ok(Buffer.from(out).equals(plain));
});

test('Inflater of the zlib format (header and checksum) as VMDK grains hold it', () => {
  const inf = new Inflater(false);
  const plain = block(5, 65536);
  const out = new Uint8Array(65536);
  assert.equal(inf.inflate(deflateSync(plain), out), 65536);
  assert.ok(Buffer.from(out).equals(plain));
  const corrupted = deflateSync(plain);
  corrupted[corrupted.length - 1] ^= 0xff; // the Adler-32 checksum no longer matches
  assert.equal(inf.inflate(corrupted, out), -1);
});
