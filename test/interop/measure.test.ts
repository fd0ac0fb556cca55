/**
 * measure against qemu-img measure (qcow2 and raw targets: the same lines, the same JSON, byte for byte) and,
 * for the targets qemu-img cannot measure (VHDX, VMDK, Parallels, UML COW), against real conversions of the same
 * source by qemu-img convert and by ours (uml_mkcow for COW): the files' sizes, summed over every file of the image,
 * must not exceed "required", and a fully written image must not exceed "fully allocated".
 */
import assert from 'node:assert/strict';
import { closeSync, fsyncSync, openSync, readdirSync, statSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { runCli } from '../../src-main/cli/main';
import { dw, must, qemuIo, run, scratch } from '../helpers';
import { makeExt4Image } from '../fixtures/fs-image';

const work = scratch('dw-measure-');
const MiB = 1 << 20;
const scattered = work.path('scattered.qcow2'); // 64 MiB, data in a few places, not cluster-aligned
const full = work.path('full.qcow2'); // 16 MiB, every byte written (the "fully allocated" check)
const fs = work.path('fs.raw'); // real ext4 image: holes at 4 KiB
const base = work.path('base.qcow2');
const top = work.path('top.qcow2'); // over base: data in both, a zero cluster over base data
const compressed = work.path('compressed.qcow2');
const bitmaps = work.path('bitmaps.qcow2');
const v2 = work.path('v2.qcow2'); // compat=0.10: cannot keep bitmaps, so qemu prints no bitmaps line

before(() => {
  must('qemu-img', ['create', '-q', '-f', 'qcow2', scattered, '64M']);
  qemuIo(scattered, 'qcow2', ['write -P 0x11 0 100k', 'write -P 0x22 10M 4k', 'write -P 0x33 33000k 3M', 'write -P 0x44 63M 1M']);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', full, '16M']);
  qemuIo(full, 'qcow2', ['write -P 0x5a 0 16M']);
  makeExt4Image(fs, work.path('tree'), '40M', { seed: 11, bytes: 8 << 20 });
  const fd = openSync(fs, 'r+');
  fsyncSync(fd); // settle its allocation before two tools look at its holes
  closeSync(fd);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', base, '32M']);
  qemuIo(base, 'qcow2', ['write -P 1 0 1M', 'write -P 2 20M 64k']);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top]);
  qemuIo(top, 'qcow2', ['write -P 3 30M 8k', 'write -z 0 64k']);
  must('qemu-img', ['convert', '-c', '-O', 'qcow2', scattered, compressed]);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', bitmaps, '8M']);
  qemuIo(bitmaps, 'qcow2', ['write -P 7 1M 1M']);
  must('qemu-img', ['bitmap', '--add', bitmaps, 'b0']);
  must('qemu-img', ['bitmap', '--add', '-g', '4096', bitmaps, 'a-longer-bitmap-name']);
  must('qemu-img', ['convert', '-O', 'qcow2', '-o', 'compat=0.10', scattered, v2]);
});
after(work.cleanup);

/**
 * Our command line run in this process (spawning a node per call would make the suite slow); the usage errors
 * below run the built CLI itself. Returns what it printed, as the real one prints it.
 */
async function ours(args: string[], input?: Buffer): Promise<string> {
  let out = '';
  let err = '';
  const code = await runCli(args, {
    out: (s) => (out += s.endsWith('\n') || s === '' ? s : s + '\n'),
    err: (s) => (err += s + '\n'),
    writeOut: async () => undefined,
    readIn: async () => input ?? new Uint8Array(0),
  });
  if (code !== 0) throw new Error(`diskwright ${args.join(' ')} exited ${code}: ${err}`);
  return out;
}

/** Our output and qemu-img's for the same arguments, which must be identical. */
async function same(args: string[]): Promise<void> {
  const q = must('qemu-img', ['measure', ...args]).stdout;
  assert.equal(await ours(['measure', ...args]), q, `measure ${args.join(' ')}`);
}

test('qcow2 and raw targets, --size: the same figures as qemu-img measure', async () => {
  for (const o of [[], ['-o', 'cluster_size=512'], ['-o', 'cluster_size=2M,refcount_bits=64'], ['-o', 'extended_l2=on,cluster_size=32k'], ['-o', 'compat=0.10,preallocation=full']]) {
    await same(['-O', 'qcow2', ...o, '--size', '10G']);
  }
  await same(['-O', 'qcow2', '--size', '1000', '--output', 'json']); // not a whole cluster
  await same(['-O', 'raw', '--size', '1001']); // rounded to sectors
  await same(['--size', '3G', '--output=json']); // raw is the default target
});

test('qcow2 targets over every kind of source: the same figures as qemu-img measure (bitmaps line included)', async () => {
  const options = [[], ['-o', 'cluster_size=4k,refcount_bits=1'], ['-o', 'cluster_size=2M,extended_l2=on'], ['-o', 'compat=0.10'], ['-o', 'preallocation=metadata'], ['-o', 'backing_file=x.qcow2']];
  for (const src of [scattered, fs, top, compressed, bitmaps, v2]) {
    for (const o of options) same(['-O', 'qcow2', ...o, src]);
    await same(['-O', 'qcow2', '--output', 'json', src]);
    await same(['-O', 'raw', src]);
  }
  await same(['-O', 'qcow2', '-f', 'raw', fs]);
  await same(['-O', 'qcow2', '-o', 'cluster_size=4k', '--output', 'json', bitmaps]);
  // The source's bitmaps really are counted (qemu shows a non-zero figure for them).
  assert.match(must('qemu-img', ['measure', '-O', 'qcow2', bitmaps]).stdout, /bitmaps size: [1-9]/);
});

/**
 * The files' lengths summed, and the room they take on disk. The latter may include blocks of the file system's
 * own (extent tree blocks count in st_blocks; qemu's Parallels driver preallocates past the end and a block can
 * stay there), so it is allowed FS_SLACK per file beyond the data: "required" is about the image's bytes.
 */
const FS_SLACK = 16384;
function bytesOf(files: string[]): { size: number; disk: number } {
  let size = 0;
  let disk = 0;
  for (const f of files) {
    const st = statSync(f);
    size += st.size;
    disk += Math.max(0, st.blocks * 512 - FS_SLACK);
  }
  return { size, disk };
}

/** The image's files: the file itself, and for a VMDK descriptor the extents qemu-img names after it. */
function filesOf(path: string): string[] {
  const dir = work.dir;
  const name = path.slice(dir.length + 1);
  const stem = name.replace(/\.vmdk$/, '');
  const extents = name.endsWith('.vmdk') ? readdirSync(dir).filter((f) => new RegExp(`^${stem}-(flat|s\\d{3}|f\\d{3})\\.vmdk$`).test(f)) : [];
  return [path, ...extents.map((f) => `${dir}/${f}`)];
}

async function measured(args: string[]): Promise<{ required: number; 'fully-allocated': number }> {
  return JSON.parse(await ours(['measure', '--output', 'json', ...args])) as { required: number; 'fully-allocated': number };
}

/**
 * Targets qemu-img cannot measure, each with the margin by which "required" may exceed a conversion of a source
 * whose data is all non-zero (so that both converters store every cluster the source allocates):
 * - VHDX: 0 for qemu's file; ours puts its data 4 MiB earlier (qemu leaves 4 MiB spare after the metadata).
 * - VMDK sparse: 0; descriptor files are counted as a 4 KiB block, so flat and twoGb* allow 4 KiB per descriptor.
 * - streamOptimized: an upper bound only (deflate's worst case per grain), so no margin is promised.
 * - Parallels: 0.
 */
const TARGETS: Array<{ fmt: string; o: string[]; margin: { qemu: number; ours: number } | undefined; qemuO?: string[] }> = [
  { fmt: 'vhdx', o: [], margin: { qemu: 0, ours: 4 * MiB } },
  { fmt: 'vhdx', o: ['-o', 'block_size=1M,log_size=2M'], margin: { qemu: 0, ours: 4 * MiB } },
  // qemu-img convert to a fixed VHDX with block_state_zero=on (its default) marks the preallocated blocks zero and
  // appends every written block again (a 48 MiB disk became 96 MiB); with it off the file is as laid out.
  { fmt: 'vhdx', o: ['-o', 'subformat=fixed'], margin: { qemu: 0, ours: 4 * MiB }, qemuO: ['-o', 'subformat=fixed,block_state_zero=off'] },
  { fmt: 'vmdk', o: [], margin: { qemu: 0, ours: 0 } },
  { fmt: 'vmdk', o: ['-o', 'subformat=twoGbMaxExtentSparse'], margin: { qemu: 4096, ours: 4096 } },
  { fmt: 'vmdk', o: ['-o', 'subformat=monolithicFlat'], margin: { qemu: 4096, ours: 4096 } },
  { fmt: 'vmdk', o: ['-o', 'subformat=streamOptimized'], margin: undefined },
  { fmt: 'parallels', o: [], margin: { qemu: 0, ours: 0 } },
  { fmt: 'parallels', o: ['-o', 'cluster_size=64k'], margin: { qemu: 0, ours: 0 } },
];

test('VHDX, VMDK, Parallels targets: conversions by qemu-img and by us fit in "required", within the stated margins', async () => {
  let n = 0;
  for (const t of TARGETS) {
    const label = `${t.fmt} ${t.o.join(' ')}`;
    const m = await measured(['-O', t.fmt, ...t.o, scattered]);
    for (const who of ['qemu', 'ours'] as const) {
      const out = work.path(`t${n++}-${who}.${t.fmt}`);
      if (who === 'qemu') must('qemu-img', ['convert', '-O', t.fmt, ...(t.qemuO ?? t.o), scattered, out]);
      else await ours(['convert', '-O', t.fmt, ...t.o, scattered, out]);
      const b = bytesOf(filesOf(out));
      assert.ok(b.size <= m.required, `${label} (${who}): the file is ${b.size} bytes, more than required ${m.required}`);
      assert.ok(b.disk <= m.required, `${label} (${who}): ${b.disk} bytes on disk, more than required ${m.required}`);
      if (t.margin) assert.ok(m.required - b.size <= t.margin[who], `${label} (${who}): required ${m.required} exceeds the file's ${b.size} by more than ${t.margin[who]}`);
    }
    // Fully written: every cluster of the disk holds data.
    const f = await measured(['-O', t.fmt, ...t.o, full]);
    assert.equal((await measured(['-O', t.fmt, ...t.o, '--size', '16M']))['fully-allocated'], f['fully-allocated'], `${label}: fully allocated depends on the size only`);
    for (const who of ['qemu', 'ours'] as const) {
      const out = work.path(`f${n++}-${who}.${t.fmt}`);
      if (who === 'qemu') must('qemu-img', ['convert', '-O', t.fmt, ...(t.qemuO ?? t.o), full, out]);
      else await ours(['convert', '-O', t.fmt, ...t.o, full, out]);
      const b = bytesOf(filesOf(out));
      assert.ok(b.size <= f['fully-allocated'], `${label} (${who}, fully written): ${b.size} bytes, more than fully allocated ${f['fully-allocated']}`);
      assert.ok(f.required <= f['fully-allocated'], `${label}: required ≤ fully allocated`);
    }
  }
});

test('a real ext4 image: every conversion fits in "required"', async () => {
  for (const t of TARGETS.filter((x) => x.o.length === 0 || x.fmt === 'vmdk')) {
    const m = await measured(['-O', t.fmt, ...t.o, fs]);
    const out = work.path(`fs-${t.fmt}-${t.o.join('')}.${t.fmt}`.replace(/[=,]/g, '_'));
    must('qemu-img', ['convert', '-O', t.fmt, ...(t.qemuO ?? t.o), fs, out]);
    const b = bytesOf(filesOf(out));
    assert.ok(b.size <= m.required && b.disk <= m.required, `${t.fmt} ${t.o.join(' ')}: ${b.size} bytes (${b.disk} on disk) > required ${m.required}`);
  }
});

test('UML COW target: the figures are the length of the file uml_mkcow makes (and ours, version 2 too)', async () => {
  const backing = work.path('cow-base.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', backing, '10M']);
  const made = work.path('made.cow');
  must('uml_mkcow', [made, backing]);
  qemuIo(backing, 'raw', ['write -P 9 1M 64k']);
  const m = await measured(['-O', 'cow', backing]);
  assert.equal(m.required, statSync(made).size);
  assert.equal(m['fully-allocated'], statSync(made).size);
  assert.deepEqual(await measured(['-O', 'cow', '--size', '10M']), m);
  const v2 = work.path('v2.cow');
  await ours(['create', '-f', 'cow', '-o', 'version=2', '-b', backing, v2]);
  await ours(['write', v2, '0', '-'], Buffer.alloc(8192, 1));
  assert.equal((await measured(['-O', 'cow', '-o', 'version=2', backing])).required, statSync(v2).size);
});

test('usage errors: one plain line and exit 1, as qemu-img exits', () => {
  const cases: string[][] = [
    ['-O', 'bogus', '--size', '1G'], // unknown target format
    ['-O', 'qcow2', '--size', '1G', scattered], // both --size and a file
    ['-O', 'qcow2'], // neither
    ['-O', 'qcow2', '-o', 'foo=1', '--size', '1G'], // unknown option
    ['-O', 'qcow2', '-o', 'cluster_size=1k,extended_l2=on', '--size', '1G'], // option values qemu refuses
    ['-O', 'qcow2', '-f', 'raw', '--size', '1G'], // -f without a file
  ];
  for (const args of cases) {
    assert.equal(run('qemu-img', ['measure', ...args]).status, 1, `qemu-img measure ${args.join(' ')}`);
    const r = dw(['measure', ...args]);
    assert.equal(r.status, 1, `diskwright measure ${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /^diskwright: /);
    assert.equal(r.stdout, '');
  }
  // A missing source is a plain error too.
  const r = dw(['measure', '-O', 'qcow2', work.path('nope.qcow2')]);
  assert.equal(r.status, 1);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
});

test('cancel (Ctrl-C, the app\'s Cancel): the walk over the source stops with exit 130', async () => {
  const ctl = new AbortController();
  ctl.abort();
  let err = '';
  const io = { signal: ctl.signal, out: () => undefined, err: (s: string) => void (err += s), writeOut: async () => undefined, readIn: async () => new Uint8Array(0) };
  assert.equal(await runCli(['measure', '-O', 'qcow2', scattered], io), 130);
  assert.match(err, /cancelled/);
});

test('-o help lists the target format\'s create options', async () => {
  assert.match(await ours(['measure', '-O', 'qcow2', '-o', 'help']), /cluster_size/);
});
