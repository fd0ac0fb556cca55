/**
 * `diskwright checksum`: the same guest content gives one value in every format qemu-img writes (raw, qcow2,
 * qcow2 compressed, VMDK, VHDX, VHD, VDI, Parallels) and through a 3-level backing chain, and that value is
 * what the script in docs/checksum.md (the definition, run here with python3) computes from the raw file.
 * Different content or a different size gives another value.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, openSync, writeSync, closeSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, dw, dwOk, must, qemuIo, scratch, seededRandom } from '../helpers';

const s = scratch('dw-checksum-');
after(() => s.cleanup());

/** The reference script, taken from the documentation itself so the two cannot drift apart. */
function scriptChecksum(raw: string): string {
  const doc = readFileSync(join(ROOT, 'docs', 'checksum.md'), 'utf8');
  const code = /```python\n([\s\S]*?)```/.exec(doc);
  assert.ok(code, 'docs/checksum.md holds the python script');
  const script = s.path('blksum.py');
  writeFileSync(script, code[1]);
  return must('python3', [script, raw]).stdout.split(/\s+/)[0];
}

const ours = (image: string, ...flags: string[]) => dwOk(['checksum', ...flags, image]).stdout.split(/\s+/)[0];

/** A raw disk of `size` bytes: random data, zero runs inside data, holes, a short tail. */
function makeRaw(path: string, size: number, seed: number): void {
  const rnd = seededRandom(seed);
  const fd = openSync(path, 'w');
  ftruncateSync(fd, size);
  for (let pos = 0; pos < size; ) {
    const len = Math.min(size - pos, 4096 * (1 + Math.floor(rnd() * 40)));
    const kind = rnd();
    if (kind < 0.45) {
      const b = Buffer.alloc(len);
      for (let i = 0; i < len; i += 4) b.writeUInt32LE(Math.floor(rnd() * 2 ** 32), i);
      writeSync(fd, b, 0, len, pos);
    } else if (kind < 0.55) writeSync(fd, Buffer.alloc(len), 0, len, pos); // zeros written as data
    pos += len;
  }
  closeSync(fd);
}

const SIZE = 9 * 1024 * 1024 + 3 * 512; // not a multiple of the 64 KiB block: the short last block counts

test('checksum: one value for the same content as raw, qcow2, qcow2 -c, vmdk, vhdx, vpc, vdi and parallels, equal to the documented script', () => {
  const raw = s.path('disk.raw');
  makeRaw(raw, SIZE, 7);
  const expected = scriptChecksum(raw);
  assert.match(expected, /^[0-9a-f]{64}$/);
  assert.equal(ours(raw), expected, 'raw');
  const targets: Array<[string, string[]]> = [
    ['qcow2', []],
    ['qcow2', ['-c']],
    ['vmdk', []],
    ['vmdk', ['-o', 'subformat=streamOptimized']],
    ['vhdx', []],
    ['vpc', ['-o', 'subformat=fixed', '-o', 'force_size=on']],
    ['vdi', []],
    ['parallels', []],
  ];
  for (const [fmt, extra] of targets) {
    const out = s.path(`disk-${fmt}-${extra.join('')}.img`);
    must('qemu-img', ['convert', '-O', fmt, ...extra, raw, out]);
    // -f as with qemu-img: a fixed VHD has no header at its start, so probing (ours and qemu's) calls it raw.
    assert.equal(ours(out, '-f', fmt), expected, `${fmt} ${extra.join(' ')}`);
  }
  const json = JSON.parse(dwOk(['checksum', '--output', 'json', raw]).stdout);
  assert.deepEqual(json, { checksum: expected, algorithm: 'blk-sha256-64k', 'virtual-size': SIZE, filename: raw });
});

test('checksum: a 3-level backing chain hashes as the raw disk it reads as; other content or size hashes otherwise', () => {
  const base = s.path('base.qcow2');
  const mid = s.path('mid.qcow2');
  const top = s.path('top.qcow2');
  must('qemu-img', ['create', '-f', 'qcow2', base, '8M']);
  qemuIo(base, 'qcow2', ['write -P 0x11 0 3M', 'write -P 0x12 5M 1M']);
  must('qemu-img', ['create', '-f', 'qcow2', '-b', base, '-F', 'qcow2', mid]);
  qemuIo(mid, 'qcow2', ['write -P 0x21 1M 1M', 'write -z 5M 512k']);
  must('qemu-img', ['create', '-f', 'qcow2', '-b', mid, '-F', 'qcow2', top]);
  qemuIo(top, 'qcow2', ['write -P 0x31 2M 64k', 'write -P 0x32 7M 100k']);
  const flat = s.path('flat.raw');
  must('qemu-img', ['convert', '-O', 'raw', top, flat]);
  const expected = scriptChecksum(flat);
  assert.equal(ours(top), expected, 'the chain');
  assert.equal(ours(flat), expected, 'the flattened raw');
  assert.notEqual(ours(mid), expected, 'the middle of the chain reads otherwise');

  // One byte changed, and the same bytes one sector longer: both differ.
  const other = s.path('other.raw');
  writeFileSync(other, readFileSync(flat));
  const fd = openSync(other, 'r+');
  writeSync(fd, Buffer.from([0xff]), 0, 1, 4 * 1024 * 1024 + 17);
  closeSync(fd);
  assert.notEqual(ours(other), expected);
  const longer = s.path('longer.raw');
  writeFileSync(longer, Buffer.concat([readFileSync(flat), Buffer.alloc(512)]));
  assert.equal(ours(longer), scriptChecksum(longer));
  assert.notEqual(ours(longer), expected, 'the size is part of the checksum');
});

test('checksum: a missing image or a bad format is one plain line and a non-zero exit', () => {
  const r = dw(['checksum', s.path('nope.qcow2')]);
  assert.notEqual(r.status, 0);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.doesNotMatch(r.stderr, /\bat \w+ \(/);
});
