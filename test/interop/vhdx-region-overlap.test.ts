/**
 * A fixed VHDX whose region table is changed so that a region overlaps the data blocks, or other regions
 * (issue 26 item 6): our check's verdict (exit status) is qemu-img check's on the same file. qemu-img makes the
 * image; the region table entry is rewritten in both copies (64 KiB at 192 KiB and 256 KiB) with its CRC-32C.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { crc32c } from '../../src-main/formats/vhdx/layout';
import { dw, must, run, scratch } from '../helpers';

const MiB = 1 << 20;

/** Rewrites region table entry `entry` (file offset and/or length), keeping the tables' checksums right. */
function mutateRegion(src: string, dst: string, entry: number, fileOffset?: number, length?: number): void {
  const d = readFileSync(src);
  for (const table of [0x30000, 0x40000]) {
    const e = table + 16 + 32 * entry;
    if (fileOffset !== undefined) d.writeBigUInt64LE(BigInt(fileOffset), e + 16);
    if (length !== undefined) d.writeUInt32LE(length, e + 24);
    d.writeUInt32LE(0, table + 4);
    d.writeUInt32LE(crc32c(d.subarray(table, table + 0x10000)), table + 4);
  }
  writeFileSync(dst, d);
}

test('a fixed VHDX whose regions overlap its data blocks or each other: check gives qemu-img check\'s verdict', (t) => {
  const s = scratch('dw-vhdx-regions-');
  t.after(s.cleanup);
  const base = s.path('fixed.vhdx');
  must('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', 'subformat=fixed', base, '8M']);
  must('qemu-io', ['-f', 'vhdx', '-c', 'write -P 0x33 0 8M', base]);
  const cases: Array<{ name: string; entry: number; offset?: number; length?: number }> = [
    // Entry 1 is the metadata region (3 MiB): grown over the data block at 16 MiB.
    { name: 'metadata region over the data block', entry: 1, length: 14 * MiB },
    // Entry 0 is the BAT (2 MiB): grown over the metadata region.
    { name: 'BAT region over the metadata region', entry: 0, length: 2 * MiB },
    { name: 'metadata region grown within free space', entry: 1, length: 6 * MiB },
  ];
  let sawCorrupt = false;
  for (const c of cases) {
    const img = s.path(`${c.name.replace(/\W+/g, '-')}.vhdx`);
    mutateRegion(base, img, c.entry, c.offset, c.length);
    const theirs = run('qemu-img', ['check', '-f', 'vhdx', img]).status;
    const ours = dw(['check', '-f', 'vhdx', img]);
    assert.equal(ours.status, theirs, `${c.name}: qemu-img check exits ${theirs}, ours ${ours.status}: ${ours.stdout}${ours.stderr}`);
    assert.doesNotMatch(ours.stderr, /\n\s+at /);
    if (theirs === 2) {
      sawCorrupt = true;
      assert.match(ours.stdout + ours.stderr, /overlaps the metadata region/);
    }
  }
  assert.ok(sawCorrupt, 'one case is a corruption for qemu-img (exit 2)');
});
