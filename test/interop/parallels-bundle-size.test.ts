/**
 * A .hdd bundle whose DiskDescriptor.xml and top image header disagree on the disk's size (issue 26 item 6): the
 * descriptor's Disk_size wins, as in Parallels, in info, convert, compare, map and check; info and check say
 * that the two differ. Before, info said the descriptor's 16 MiB while convert wrote the header's 290 TiB.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, readdirSync, readFileSync, statSync, writeSync, closeSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createImage } from '../../src-main/services/create';
import { writeBytes } from '../../src-main/services/rw';
import { dw, must, scratch } from '../helpers';

const MiB = 1 << 20;

test("a bundle's descriptor size wins over its image header's, and info and check say they differ", async (t) => {
  const s = scratch('dw-prl-size-');
  t.after(s.cleanup);
  const bundle = s.path('b.hdd');
  await createImage({ path: bundle, format: 'parallels', size: 16 * MiB });
  await writeBytes({ path: bundle, offset: 0, data: new Uint8Array(MiB).fill(0x42) });
  const hds = join(bundle, readdirSync(bundle).find((n) => n.endsWith('.hds'))!);
  // The header's nb_sectors (u64 at offset 36) says 290 TiB.
  const huge = 290n * 2n ** 40n / 512n;
  const fd = openSync(hds, 'r+');
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(huge);
  writeSync(fd, b, 0, 8, 36);
  closeSync(fd);

  const info = dw(['info', '--output=json', bundle]);
  assert.equal(info.status, 0, info.stderr);
  const j = JSON.parse(info.stdout);
  assert.equal(j['virtual-size'], 16 * MiB);
  assert.match(JSON.stringify(j['format-specific']), /the descriptor's size is used/);

  const out = s.path('out.raw');
  const conv = dw(['convert', '-O', 'raw', bundle, out]);
  assert.equal(conv.status, 0, conv.stderr);
  assert.equal(statSync(out).size, 16 * MiB);
  const want = Buffer.alloc(16 * MiB);
  want.fill(0x42, 0, MiB);
  assert.ok(readFileSync(out).equals(want));
  writeFileSync(s.path('want.raw'), want);
  const cmp = dw(['compare', bundle, s.path('want.raw')]);
  assert.equal(cmp.status, 0, cmp.stdout + cmp.stderr);
  must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', out, s.path('want.raw')]);

  const map = dw(['map', '--output=json', bundle]);
  assert.equal(map.status, 0, map.stderr);
  const entries = JSON.parse(map.stdout) as Array<{ start: number; length: number }>;
  const last = entries[entries.length - 1];
  assert.equal(last.start + last.length, 16 * MiB);

  const check = dw(['check', bundle]);
  assert.equal(check.status, 2, check.stdout + check.stderr);
  assert.match(check.stdout + check.stderr, /descriptor says the disk is 16777216 bytes/);
});
