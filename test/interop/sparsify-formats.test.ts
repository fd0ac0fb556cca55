/**
 * sparsify --in-place in every format that can release space (issue 23): an ext4 that held a 40 MiB file,
 * deleted with debugfs, made into VDI, VHD (dynamic and fixed), VMDK (monolithicSparse, and a child over a parent
 * with zeroed-grain entries), Parallels and VHDX by qemu-img convert, then compacted in place. The oracles:
 * qemu-img check (our check for VHD, which qemu cannot check), qemu-img convert back to raw compared byte for byte
 * with the disk before (equal outside dumpe2fs's free blocks, zeros or as before inside them), e2fsck -fn, debugfs
 * dump of the kept file, and the host's own count of the file's blocks (stat) and length. Formats that cannot
 * release space (a differencing VHD, a streamOptimized VMDK) refuse and change nothing.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { assertPlainError, dwOk, must, run, scratch } from '../helpers';
import { dumpe2fs, makeExt } from './inside-common';
import { MiB, allocated, assertKeptAndZeroed, randomFile } from './sparsify-common';

const s = scratch('dw-sparsify-formats-');
after(() => s.cleanup());

const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
let disk: string;
let keep: Buffer;
let free: Array<{ start: number; length: number }>;

before(() => {
  const tree = s.path('tree');
  mkdirSync(tree, { recursive: true });
  keep = randomFile(join(tree, 'keep.bin'), 2 * MiB + 5, 70);
  randomFile(join(tree, 'big.bin'), 40 * MiB, 71);
  disk = s.path('ext4.raw');
  makeExt(disk, tree, '64M', ['-t', 'ext4', '-b', '4096']);
  must('debugfs', ['-w', '-R', 'rm /big.bin', disk]);
  free = dumpe2fs(disk).free;
});

interface Report {
  reclaimBytes: number;
  sizeBefore: number;
  sizeAfter?: number;
  notes: string[];
}

/** The guest disk of `image` (qemu-img's reading) is the disk before outside the free blocks; e2fsck clean; the kept file equal. */
function assertGuestKept(image: string, format: string): void {
  const back = s.path(`back-${Math.random().toString(36).slice(2)}.raw`);
  must('qemu-img', ['convert', '-f', format, '-O', 'raw', image, back]);
  // A VHD's size is rounded up to its CHS geometry: what lies past the disk reads as zeros.
  const past = readFileSync(back).subarray(statSync(disk).size);
  assert.ok(past.every((b) => b === 0), 'nothing past the disk');
  truncateSync(back, statSync(disk).size);
  const held = assertKeptAndZeroed(disk, back, free, true);
  assert.ok(held >= 40 * MiB, 'the deleted file lay in the free blocks');
  const fsck = run('e2fsck', ['-fn', back]);
  assert.equal(fsck.status, 0, `e2fsck -fn: ${fsck.stdout}${fsck.stderr}`);
  const out = s.path('keep.out');
  must('debugfs', ['-R', `dump /keep.bin ${out}`, back]);
  assert.ok(readFileSync(out).equals(keep), 'the kept file reads the same');
}

function qemuClean(image: string, format: string): void {
  if (format === 'vpc') {
    // qemu has no check for VHD: ours, and qemu-img reading every block (the convert in assertGuestKept).
    const r = dwOk(['check', '-f', 'vpc', '--output', 'json', image]);
    const j = JSON.parse(r.stdout) as { corruptions?: number; leaks?: number };
    assert.equal((j.corruptions ?? 0) + (j.leaks ?? 0), 0, r.stdout);
    return;
  }
  const c = run('qemu-img', ['check', '-f', format, image]);
  assert.equal(c.status, 0, `qemu-img check: ${c.stdout}${c.stderr}`);
}

/**
 * `tail`: old data is written (qemu-io) into free space at the disk's end first, so that the format allocates it
 * last in the file: giving it back makes the file shorter.
 */
const cases: Array<{ name: string; format: string; opts: string[]; shorter?: boolean; tail?: boolean }> = [
  { name: 'VDI (dynamic): the last blocks move into the holes and the file is cut', format: 'vdi', opts: [], shorter: true },
  { name: 'VDI (static): holes punched', format: 'vdi', opts: ['-o', 'static=on'] },
  { name: 'VHD (dynamic): BAT entries unused, blocks punched', format: 'vpc', opts: [] },
  { name: 'VHD (dynamic) with freed blocks last in the file: the footer moves down and the file is cut', format: 'vpc', opts: [], tail: true, shorter: true },
  { name: 'VHD (fixed): holes punched', format: 'vpc', opts: ['-o', 'subformat=fixed'] },
  { name: 'VMDK (monolithicSparse): grain entries unallocated, grains punched', format: 'vmdk', opts: [] },
  { name: 'Parallels: BAT entries 0, clusters punched', format: 'parallels', opts: [] },
  { name: 'Parallels with freed clusters last in the file: the file is cut after the last cluster left', format: 'parallels', opts: [], tail: true, shorter: true },
  { name: 'VHDX (dynamic): blocks set to zero, their space punched', format: 'vhdx', opts: [] },
];

for (const c of cases) {
  test(`in place, ${c.name}; qemu-img check clean, the guest disk as before outside the free blocks`, () => {
    const img = s.path(`a-${c.opts.join('').replace(/\W/g, '')}${c.tail ? '-tail' : ''}.${c.format === 'vpc' ? 'vhd' : c.format}`);
    must('qemu-img', ['convert', '-O', c.format, ...c.opts, disk, img]);
    if (c.tail) {
      assert.ok(free.some((f) => f.start <= 56 * MiB && f.start + f.length >= 60 * MiB), 'the disk is free at 56-60 MiB');
      must('qemu-io', ['-f', c.format, '-c', 'write -P 0x5a 56M 4M', img]);
    }
    const lengthBefore = statSync(img).size;
    const blocksBefore = allocated(img);
    const dry = JSON.parse(dwOk(['sparsify', '--dry-run', '--in-place', '-f', c.format, img, '--output', 'json']).stdout) as Report;
    const r = JSON.parse(dwOk(['sparsify', '--in-place', '-f', c.format, img, '--output', 'json']).stdout) as Report;
    assert.equal(r.reclaimBytes, dry.reclaimBytes, 'the preview is what the compaction gives back');
    assert.ok(r.reclaimBytes >= 40 * MiB, `the deleted file's blocks (${r.reclaimBytes})`);
    qemuClean(img, c.format);
    assertGuestKept(img, c.format);
    // The host's blocks: the deleted file's space back, less the format's rounding to its allocation unit.
    assert.ok(blocksBefore - allocated(img) >= 32 * MiB, `${c.format}: ${blocksBefore} → ${allocated(img)} bytes on the host`);
    assert.equal(r.sizeAfter, allocated(img), 'the report says what the host says');
    if (c.shorter) assert.ok(lengthBefore - statSync(img).size >= (c.tail ? 4 : 32) * MiB, `the file is shorter: ${lengthBefore} → ${statSync(img).size}`);
    // Compacting again finds nothing more to give back, and changes nothing.
    const digest = sha(img);
    const again = JSON.parse(dwOk(['sparsify', '--in-place', '-f', c.format, img, '--output', 'json']).stdout) as Report;
    assert.ok(again.reclaimBytes < r.reclaimBytes, `only parts of allocation units at the free ranges' edges are left (${again.reclaimBytes})`);
    if (c.format !== 'parallels') assert.equal(sha(img), digest, 'a second run writes nothing');
  });
}

test('in place, a VMDK child over a parent with zeroed-grain entries: free grains read as zeros, not as the parent', () => {
  // The parent holds the disk before the deletion (the big file's data); the child holds every block after it.
  const parentRaw = s.path('parent-src.raw');
  const tree = s.path('tree');
  makeExt(parentRaw, tree, '64M', ['-t', 'ext4', '-b', '4096']);
  const parent = s.path('parent.vmdk');
  must('qemu-img', ['convert', '-O', 'vmdk', parentRaw, parent]);
  const child = s.path('child.vmdk');
  must('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'zeroed_grain=on', '-b', parent, '-F', 'vmdk', child]);
  must('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'vmdk', disk, child]);
  const r = JSON.parse(dwOk(['sparsify', '--in-place', child, '--output', 'json']).stdout) as Report;
  assert.ok(r.reclaimBytes >= 40 * MiB, `the deleted file's grains (${r.reclaimBytes})`);
  qemuClean(child, 'vmdk');
  assertGuestKept(child, 'vmdk');
});

test('a differencing VHD and a streamOptimized VMDK cannot release space in place: refused, nothing changed', () => {
  const parent = s.path('base.vhd');
  must('qemu-img', ['convert', '-O', 'vpc', disk, parent]);
  const child = s.path('diff.vhd');
  dwOk(['create', '-f', 'vpc', '-b', parent, '-F', 'vpc', child]);
  dwOk(['convert', '-n', '-f', 'raw', '-O', 'vpc', disk, child]);
  const before = sha(child);
  assertPlainError(['sparsify', '--in-place', child], /cannot compact in place .*differencing VHD.*compact into a new image instead/);
  assert.equal(sha(child), before);

  const stream = s.path('stream.vmdk');
  must('qemu-img', ['convert', '-O', 'vmdk', '-o', 'subformat=streamOptimized', disk, stream]);
  const sb = sha(stream);
  assertPlainError(['sparsify', '--in-place', stream], /cannot compact in place .*streamOptimized/);
  assert.equal(sha(stream), sb);
});

test('in place, a differencing VDI: free blocks become "discarded" (zeros, not the parent), the rest packed and the file cut', () => {
  // The parent holds the disk before the deletion; the child (made differencing by rebase -u) every block after it.
  const parentRaw = s.path('vdi-parent.raw');
  makeExt(parentRaw, s.path('tree'), '64M', ['-t', 'ext4', '-b', '4096']);
  const dir = s.path('vdi-chain');
  mkdirSync(dir);
  const parent = join(dir, 'parent.vdi');
  const child = join(dir, 'child.vdi');
  must('qemu-img', ['convert', '-O', 'vdi', parentRaw, parent]);
  must('qemu-img', ['convert', '-O', 'vdi', disk, child]);
  const entriesBefore = vdiMap(child).entries;
  dwOk(['rebase', '-u', '-b', 'parent.vdi', '-F', 'vdi', child]);
  const r = JSON.parse(dwOk(['sparsify', '--in-place', child, '--output', 'json']).stdout) as Report;
  assert.ok(r.reclaimBytes >= 40 * MiB);

  // The block map as the VDI header lays it out (VirtualBox's VDICore.h; qemu's block/vdi.c), read here.
  const m = vdiMap(child);
  const bs = m.blockSize;
  let discarded = 0;
  for (let g = 0; g < m.entries.length; g++) {
    const whollyFree = free.some((f) => f.start <= g * bs && (g + 1) * bs <= f.start + f.length);
    if (whollyFree && entriesBefore[g] < 0xfffffffe) {
      assert.equal(m.entries[g], 0xfffffffe, `block ${g} is marked discarded`);
      discarded++;
    } else if (!whollyFree) assert.equal(m.entries[g] < 0xfffffffe, entriesBefore[g] < 0xfffffffe, `block ${g} keeps its data`);
  }
  assert.ok(discarded * bs >= 36 * MiB, `${discarded} blocks discarded`);
  const inUse = m.entries.filter((e) => e < 0xfffffffe);
  assert.equal(m.allocated, inUse.length, 'blocks_allocated counts the entries in use');
  assert.deepEqual([...inUse].sort((a, b) => a - b), inUse.map((_, i) => i), 'the data blocks are 0..n-1: no hole left');
  assert.equal(statSync(child).size, m.dataOffset + m.allocated * bs, 'the file ends after the last block');

  // Made standalone again, qemu reads it: what the guest had, zeros in the free blocks.
  dwOk(['rebase', '-u', '-b', '', child]);
  qemuClean(child, 'vdi');
  assertGuestKept(child, 'vdi');
});

/** A VDI's block map and the header fields about it, read from the file at the 1.1 header's offsets. */
function vdiMap(path: string): { entries: number[]; blockSize: number; allocated: number; dataOffset: number } {
  const b = readFileSync(path);
  const bmap = b.readUInt32LE(0x154);
  const blocks = b.readUInt32LE(0x180);
  const entries: number[] = [];
  for (let g = 0; g < blocks; g++) entries.push(b.readUInt32LE(bmap + 4 * g));
  return { entries, blockSize: b.readUInt32LE(0x178), allocated: b.readUInt32LE(0x184), dataOffset: b.readUInt32LE(0x158) };
}
