/**
 * check for VDI against qemu-img check on block maps damaged in known ways (entries past blocks_in_image, two
 * entries naming one data block, the header's allocated count disagreeing): the same corruption counts and
 * exit codes. qemu cannot repair VDI images; our repair (-r all) leaves an image qemu-img check finds clean and
 * whose every guest byte reads (through qemu-img) as before; -r leaks fixes only a count left too high.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dw, run, scratch } from '../helpers';
import { io, qimg } from './vdi-common';

const s = scratch('dw-vdi-check-');
after(() => s.cleanup());

const BMAP = 512;
const COUNT_AT = 0x184;

/** A 10 MiB image with guest blocks 0, 2, 3, 5 written (data blocks 0..3), then `damage` applied to its bytes. */
function make(path: string, damage: (b: Buffer) => void): void {
  qimg(['create', '-q', '-f', 'vdi', path, '10M']);
  io(path, ['write -P 0x10 0 1M', 'write -P 0x12 2M 4k', 'write -P 0x13 3M 1M', 'write -P 0x15 5M 512']);
  const b = readFileSync(path);
  damage(b);
  writeFileSync(path, b);
}
const entry = (b: Buffer, g: number, v: number) => b.writeUInt32LE(v >>> 0, BMAP + 4 * g);
const count = (b: Buffer, v: number) => b.writeUInt32LE(v, COUNT_AT);

interface Case {
  name: string;
  damage: (b: Buffer) => void;
  /** Corruptions we report beyond qemu-img's for this damage (a hole below the count: see check.ts). */
  beyondQemu?: number;
  /** Repaired by -r leaks (a count left too high by a crash during an allocation). */
  leak?: boolean;
  /** The repair copies nothing: the file keeps its size. */
  noCopy?: boolean;
}

const CASES: Case[] = [
  { name: 'an entry past blocks_in_image', damage: (b) => entry(b, 7, 50) },
  { name: 'two entries past blocks_in_image and the count off', damage: (b) => (entry(b, 7, 50), entry(b, 8, 0xfffffffd), count(b, 3)) },
  { name: 'an unallocated entry naming a used block, count adjusted', damage: (b) => (entry(b, 7, 1), count(b, 5)) },
  { name: 'an unallocated entry naming a used block, count not adjusted', damage: (b) => entry(b, 7, 1) },
  { name: 'an allocated entry moved onto another\'s block', damage: (b) => entry(b, 3, 0) },
  { name: 'the count one too high (a crash between header and map)', damage: (b) => count(b, 5), leak: true },
  { name: 'the count one too low', damage: (b) => count(b, 3) },
  { name: 'three blocks sharing one, one entry past the end', damage: (b) => (entry(b, 6, 2), entry(b, 9, 2), entry(b, 4, 99)) },
  {
    name: 'an entry sharing a block of zeros (repaired as a discarded block, not a copy)',
    damage: (b) => (b.fill(0, 1024 + 2 * 1024 * 1024, 1024 + 3 * 1024 * 1024), entry(b, 7, 2), count(b, 5)),
    noCopy: true,
  },
  { name: 'a hole below the count (qemu-img misses it; the next allocation would overwrite the block)', damage: (b) => entry(b, 5, 8), beyondQemu: 1 },
];

CASES.forEach((c, i) => {
  test(`vdi check, ${c.name}: qemu-img check's verdict and exit code; -r all leaves qemu-img check clean and the guest as it read`, () => {
    const img = s.path(`c${i}.vdi`);
    make(img, c.damage);
    const q = run('qemu-img', ['check', '--output=json', '-f', 'vdi', img]);
    const theirs = JSON.parse(q.stdout) as { corruptions?: number };
    const d = dw(['check', '--output=json', img]);
    const ours = JSON.parse(d.stdout) as { corruptions?: number };
    const extra = c.beyondQemu ?? 0;
    assert.equal((ours.corruptions ?? 0) - extra, theirs.corruptions ?? 0, `corruptions: ours ${d.stdout}, qemu-img ${q.stdout}`);
    assert.equal(d.status, extra > 0 ? 2 : q.status, 'exit code');
    assert.ok((ours.corruptions ?? 0) > 0, 'the damage is found');

    const before = s.path(`c${i}.before.raw`);
    qimg(['convert', '-f', 'vdi', '-O', 'raw', img, before]);
    const copy = s.path(`c${i}.leaks.vdi`);
    copyFileSync(img, copy);
    const l = dw(['check', '-r', 'leaks', '--output=json', copy]);
    assert.equal(dw(['check', copy]).status === 0, c.leak === true, `-r leaks repairs only a count too high: ${l.stdout}`);
    if (c.leak) assert.equal(run('qemu-img', ['check', '-f', 'vdi', copy]).status, 0);

    const sizeBefore = statSync(img).size;
    const r = dw(['check', '-r', 'all', '--output=json', img]);
    if (c.noCopy) assert.equal(statSync(img).size, sizeBefore, 'the repair copied a block');
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.ok(JSON.parse(r.stdout)['corruptions-fixed'] > 0);
    const after = run('qemu-img', ['check', '-f', 'vdi', img]);
    assert.equal(after.status, 0, `qemu-img check after our repair: ${after.stdout}${after.stderr}`);
    assert.equal(dw(['check', img]).status, 0);
    const now = s.path(`c${i}.after.raw`);
    qimg(['convert', '-f', 'vdi', '-O', 'raw', img, now]);
    assert.ok(readFileSync(before).equals(readFileSync(now)), 'the guest reads otherwise after the repair');
    // And the repaired image takes writes that qemu-img check finds clean.
    io(img, ['write -P 0x77 9M 4k']);
    assert.equal(run('qemu-img', ['check', '-f', 'vdi', img]).status, 0);
  });
});

test('vdi check: a clean image is clean for both, exit 0; qemu-img cannot repair (exit 63), we say there was nothing to do', () => {
  const img = s.path('clean.vdi');
  make(img, () => undefined);
  assert.equal(run('qemu-img', ['check', '-f', 'vdi', img]).status, 0);
  assert.equal(run('qemu-img', ['check', '-r', 'all', '-f', 'vdi', img]).status, 63);
  const d = dw(['check', img]);
  assert.equal(d.status, 0);
  assert.match(d.stdout, /No errors were found/);
  assert.equal(dw(['check', '-r', 'all', img]).status, 0);
});
