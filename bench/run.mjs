// Side-by-side timings of diskwright and qemu-img on the same inputs, printed as ratios (ours / qemu's;
// below 1.00 means we are faster). Nothing here asserts a timing.
//
//   npm run bench                      1 GiB images, best of 3, then the memory rows at 1 GiB and 64 GiB
//   npm run bench -- --size 512M       other sizes (or a list: --size 256M,2G)
//   npm run bench -- --repeats 5 --only convert
//   npm run bench -- --inputs fs       only the file system image (or: everyother)
//   npm run bench -- --memory-sizes 1G,16G   (or "none")
//
// Rows, for each input: convert raw -> raw and raw -> qcow2, VMDK, VHDX, Parallels, each with both tools'
// defaults, with -t unsafe and with -t writeback; -C (copy offload) into raw and qcow2 and out of qcow2; each format -> raw, and VMDK, VHDX, Parallels -> qcow2 and
// back (-t unsafe); qcow2 -c and streamOptimized VMDK; reading compressed qcow2 and recompressing; map,
// compare, check and info; checksum (against sha256sum of the raw file, and a sparse 64 GiB qcow2 against
// qemu-img map). Each row gives the wall time (best of the repeats) and the peak RSS (largest) of
// both tools.
//
// Two inputs per size: "everyother" has data in every other MiB (written by qemu-io, so qemu-img reads it as
// it reads any image); "fs" is a real ext4 file system built by mke2fs -d from a generated tree of text,
// random and sparse files (test/fixtures/fs-image.ts, deterministic), about a third full, whose data lies in
// 4 KiB blocks with holes between them as a real disk's does.
// The memory rows ("spread": 64 MiB of data spread evenly over the virtual size) convert raw to and from each
// format at 1 GiB and 64 GiB: peak RSS should not grow with the virtual size.
// sparsify (fs input only): the ext4 with a file of a quarter of the disk written and deleted, compacted into qcow2,
// set against qemu-img convert of the same input (the note gives both outputs' sizes).
// Every timed command writes a new target: the previous one is deleted first, outside the timing, so neither
// tool pays for freeing the last run's file. Every output is checked (qemu-img compare, and check for qcow2)
// so a fast wrong answer cannot pass unnoticed.
//
// Durability differs by default: qemu-img convert opens its target with cache=unsafe (no flush at all),
// while diskwright flushes the new image once before renaming it into place. Rows marked "-t unsafe" run both
// without a flush, rows marked "-t writeback" both with one; the plain rows compare each tool's default.
import './node-env.mjs';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeExt4Image } from '../test/fixtures/fs-image.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'bin', 'diskwright.js');
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
};
const sizes = arg('--size', '1G').split(',');
const memorySizes = arg('--memory-sizes', '1G,64G').split(',').filter((x) => x !== 'none');
const repeats = Number(arg('--repeats', '3'));
const only = arg('--only', '');
const inputKinds = arg('--inputs', 'everyother,fs').split(',');
const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'dw-bench-'));

function sh(cmd, args, okCodes = [0]) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (!okCodes.includes(r.status)) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error}`);
  return r;
}
/** Peak RSS (KiB) of the last command run through `timed`, read from GNU time's report. */
let lastRss = 0;
/** Runs a command under /usr/bin/time so its peak RSS is known; its own output is returned as sh's. */
function timed(cmd, args, okCodes = [0]) {
  const r = sh('/usr/bin/time', ['-f', 'DWRSS %M', cmd, ...args], okCodes);
  const m = /DWRSS (\d+)\s*$/.exec(r.stderr);
  lastRss = m ? Number(m[1]) : 0;
  return r;
}
const ours = (args, okCodes) => timed(process.execPath, [cli, ...args], okCodes);
const qemu = (args, okCodes) => timed('qemu-img', args, okCodes);

/** Best wall time of `repeats` runs and the largest peak RSS (MB); `before` runs untimed ahead of each. */
function best(fn, before = () => undefined) {
  let min = Infinity;
  let rss = 0;
  for (let i = 0; i < repeats; i++) {
    before();
    const t = process.hrtime.bigint();
    fn();
    min = Math.min(min, Number(process.hrtime.bigint() - t) / 1e6);
    rss = Math.max(rss, lastRss / 1024);
  }
  return { ms: min, rss };
}

/** The fs input: an ext4 raw image about a third full, converted to `fmt` by qemu-img where asked. */
function makeFsInput(fmt, size) {
  const rawPath = join(dir, `fs-${size}.raw`);
  const bytes = Math.floor(0.33 * Number(JSON.parse(qemu(['measure', '--output', 'json', '-O', 'raw', '--size', size]).stdout)['fully-allocated']));
  if (!existsSync(rawPath)) {
    makeExt4Image(rawPath, join(dir, `tree-${size}`), size, { seed: 1, bytes });
    rmSync(join(dir, `tree-${size}`), { recursive: true, force: true });
  }
  if (fmt === 'raw') return rawPath;
  const p = join(dir, `fs-${size}.${fmt}`);
  qemu(['convert', '-O', fmt, rawPath, p]);
  return p;
}

/** An image with data in every other MiB, as qemu-io writes it. */
function makeInput(fmt, size, kind = 'everyother') {
  if (kind === 'fs') return makeFsInput(fmt, size);
  const p = join(dir, `input-${size}.${fmt}`);
  qemu(['create', '-q', '-f', fmt, p, size]);
  const vsize = JSON.parse(qemu(['info', '--output', 'json', p]).stdout)['virtual-size'];
  const cmds = [];
  if (kind === 'spread') {
    for (let i = 0; i < 64; i++) cmds.push('-c', `write -P ${i + 1} ${Math.floor(vsize / 64 / 1048576) * 1048576 * i} 1M`);
  } else for (let off = 0; off < vsize; off += 2 * 1024 * 1024) cmds.push('-c', `write -P ${(off >> 20) & 0xff} ${off} 1M`);
  sh('qemu-io', ['-f', fmt, ...cmds, p]);
  return p;
}

const rows = [];
const want = (name) => !only || name.includes(only);

function convertCase(size, input, inFmt, outFmt, flags, label, oursFlags = flags, qemuFlags = flags) {
  const name = `convert ${inFmt} -> ${outFmt}${label ? ` ${label}` : ''}`;
  const inputName = currentInput;
  if (!want(name)) return;
  const a = join(dir, `ours.${outFmt}`);
  const b = join(dir, `theirs.${outFmt}`);
  const rmA = () => rmSync(a, { force: true });
  const rmB = () => rmSync(b, { force: true });
  const tOurs = best(() => ours(['convert', ...oursFlags, '-f', inFmt, '-O', outFmt, input, a]), rmA);
  const tQemu = best(() => qemu(['convert', ...qemuFlags, '-f', inFmt, '-O', outFmt, input, b]), rmB);
  let note = '';
  if (sh('qemu-img', ['compare', '-q', input, a], [0, 1]).status !== 0) note = 'OUTPUT DIFFERS';
  else if (outFmt === 'qcow2' && sh('qemu-img', ['check', '-q', a], [0, 1, 2, 3]).status !== 0) note = 'qemu-img check fails';
  rows.push({ size, input: inputName, name, ours: tOurs, qemu: tQemu, note });
  rmA();
  rmB();
}

function sparsifyCase(size, fsRaw) {
  const input = join(dir, 'deleted.raw');
  const junk = join(dir, 'junk.bin');
  sh('cp', ['--sparse=always', fsRaw, input]);
  const vsize = JSON.parse(qemu(['info', '--output', 'json', input]).stdout)['virtual-size'];
  sh('dd', ['if=/dev/urandom', `of=${junk}`, 'bs=1M', `count=${Math.floor(vsize / 4 / 1048576)}`, 'status=none']);
  sh('debugfs', ['-w', '-R', `write ${junk} junk.bin`, input]);
  sh('debugfs', ['-w', '-R', 'rm junk.bin', input]);
  rmSync(junk, { force: true });
  const a = join(dir, 'sparse.qcow2');
  const b = join(dir, 'plain.qcow2');
  const rmA = () => rmSync(a, { force: true });
  const rmB = () => rmSync(b, { force: true });
  const tOurs = best(() => ours(['sparsify', '-q', '-t', 'unsafe', '-f', 'raw', '-O', 'qcow2', input, a]), rmA);
  const tQemu = best(() => qemu(['convert', '-f', 'raw', '-O', 'qcow2', input, b]), rmB);
  // CPU time (user + sys, best of the runs) as well: on a loaded machine the wall times above are mostly the
  // other sessions' load, while the CPU each tool spends is its own.
  const cpu = (cmd, args, rm) => {
    let min = Infinity;
    for (let i = 0; i < repeats; i++) {
      rm();
      const m = /DWCPU ([\d.]+) ([\d.]+)\s*$/.exec(sh('/usr/bin/time', ['-f', 'DWCPU %U %S', cmd, ...args]).stderr);
      if (m) min = Math.min(min, Number(m[1]) + Number(m[2]));
    }
    return min;
  };
  const cOurs = cpu(process.execPath, [cli, 'sparsify', '-q', '-t', 'unsafe', '-f', 'raw', '-O', 'qcow2', input, a], rmA);
  const cQemu = cpu('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', input, b], rmB);
  const mib = (p) => (Number(sh('stat', ['-c', '%b', p]).stdout) * 512) / 1048576;
  let note = `sizes: ours ${mib(a).toFixed(0)} MiB, qemu-img convert ${mib(b).toFixed(0)} MiB; CPU ours ${cOurs.toFixed(2)} s, qemu-img ${cQemu.toFixed(2)} s (${(cOurs / cQemu).toFixed(2)}x)`;
  if (sh('qemu-img', ['check', '-q', a], [0, 1, 2, 3]).status !== 0) note += '; qemu-img check fails';
  rows.push({ size, input: 'fs+deleted', name: 'sparsify raw -> qcow2 -t unsafe', ours: tOurs, qemu: tQemu, note });
  rmA();
  rmB();
  rmSync(input, { force: true });
}

let currentInput = '';
/** The formats both tools write; every one is converted to and from raw and qcow2. */
const FORMATS = ['qcow2', 'vmdk', 'vhdx', 'parallels'];
for (const size of sizes) for (const kind of inputKinds) {
  currentInput = kind;
  const inputs = { raw: makeInput('raw', size, kind), qcow2: makeInput('qcow2', size, kind) };
  // Each tool's default first (qemu-img: no flush; diskwright: one flush before the rename), then the same
  // durability in both: -t unsafe (no flush) and -t writeback (one flush at the end).
  convertCase(size, inputs.raw, 'raw', 'raw', [], '');
  convertCase(size, inputs.raw, 'raw', 'raw', ['-t', 'unsafe'], '-t unsafe');
  convertCase(size, inputs.raw, 'raw', 'raw', ['-t', 'writeback'], '-t writeback');
  for (const fmt of FORMATS) {
    if (!FORMATS.concat('raw').some((f) => want(`convert raw -> ${fmt}`) || want(`convert ${fmt} -> ${f}`) || want(`convert ${f} -> ${fmt}`))) continue;
    convertCase(size, inputs.raw, 'raw', fmt, [], '');
    convertCase(size, inputs.raw, 'raw', fmt, ['-t', 'unsafe'], '-t unsafe');
    convertCase(size, inputs.raw, 'raw', fmt, ['-t', 'writeback'], '-t writeback');
    // Out of the format (an input qemu-img wrote), to raw and, for the others, to qcow2 and back.
    const input = fmt === 'qcow2' ? inputs.qcow2 : makeInput(fmt, size, kind);
    convertCase(size, input, fmt, 'raw', ['-t', 'unsafe'], '-t unsafe');
    if (fmt !== 'qcow2') {
      convertCase(size, input, fmt, 'qcow2', ['-t', 'unsafe'], '-t unsafe');
      convertCase(size, inputs.qcow2, 'qcow2', fmt, ['-t', 'unsafe'], '-t unsafe');
      rmSync(input, { force: true });
    }
  }
  // Copy offload (-C: copy_file_range; reflinks where the file system shares blocks: run with BENCH_DIR on a
  // btrfs or XFS mount to see them), against qemu-img -C and against qemu-img's default.
  for (const fmt of ['raw', 'qcow2']) {
    convertCase(size, inputs.raw, 'raw', fmt, ['-C'], '-C');
    convertCase(size, inputs.raw, 'raw', fmt, [], '-C vs qemu default', ['-C'], []);
  }
  convertCase(size, inputs.qcow2, 'qcow2', 'raw', ['-C', '-t', 'unsafe'], '-C -t unsafe');
  // Compressed output, reading compressed clusters, and recompressing them.
  convertCase(size, inputs.raw, 'raw', 'qcow2', ['-c'], '-c');
  convertCase(size, inputs.raw, 'raw', 'vmdk', ['-o', 'subformat=streamOptimized'], 'streamOptimized');
  if (want('compressed')) {
    const packed = join(dir, `packed-${size}.qcow2`);
    qemu(['convert', '-c', '-O', 'qcow2', inputs.raw, packed]);
    convertCase(size, packed, 'qcow2', 'raw', ['-t', 'unsafe'], '(compressed) -t unsafe');
    convertCase(size, inputs.qcow2, 'qcow2', 'qcow2', ['-c', '-t', 'unsafe'], '-c -t unsafe');
    rmSync(packed, { force: true });
  }
  for (const fmt of ['raw', 'qcow2']) {
    if (want(`map ${fmt}`)) {
      const args = ['map', '--output', 'json', inputs[fmt]];
      const same = ours(args).stdout.replace(/\s/g, '') === qemu(args).stdout.replace(/\s/g, '');
      rows.push({ size, input: kind, name: `map ${fmt}`, ours: best(() => ours(args)), qemu: best(() => qemu(args)), note: same ? '' : 'MAP DIFFERS' });
    }
    if (want(`compare ${fmt}`)) {
      const copy = join(dir, `copy.${fmt}`);
      qemu(['convert', '-f', fmt, '-O', fmt, inputs[fmt], copy]);
      const args = ['compare', inputs[fmt], copy];
      const same = ours(args).stdout === qemu(args).stdout;
      rows.push({ size, input: kind, name: `compare ${fmt}`, ours: best(() => ours(args)), qemu: best(() => qemu(args)), note: same ? '' : 'VERDICT DIFFERS' });
      rmSync(copy, { force: true });
    }
  }
  // checksum against sha256sum of the raw file (the goal: faster; ours reads only what the image holds), and of
  // the qcow2 against its raw: the same value whatever the format.
  if (want('checksum')) {
    const sum = best(() => timed('sha256sum', [inputs.raw]));
    const same = ours(['checksum', '-f', 'raw', inputs.raw]).stdout.split(' ')[0] === ours(['checksum', inputs.qcow2]).stdout.split(' ')[0];
    rows.push({ size, input: kind, name: 'checksum raw (vs sha256sum)', ours: best(() => ours(['checksum', '-f', 'raw', inputs.raw])), qemu: sum, note: same ? '' : 'CHECKSUM DIFFERS ACROSS FORMATS' });
    rows.push({ size, input: kind, name: 'checksum qcow2 (vs sha256sum raw)', ours: best(() => ours(['checksum', inputs.qcow2])), qemu: sum, note: '' });
  }
  for (const cmd of ['check', 'info']) {
    if (!want(`${cmd} qcow2`)) continue;
    const args = [cmd, inputs.qcow2];
    rows.push({ size, input: kind, name: `${cmd} qcow2`, ours: best(() => ours(args, [0, 2, 3])), qemu: best(() => qemu(args, [0, 2, 3])), note: '' });
  }
  // sparsify (issue 23): the fs input with a file of a quarter of its size written and then deleted (debugfs), compacted
  // into qcow2, against qemu-img convert of the same input; the note gives both outputs' sizes on disk.
  if (kind === 'fs' && want('sparsify')) sparsifyCase(size, inputs.raw);
  for (const p of Object.values(inputs)) rmSync(p, { force: true });
}

// Memory: the same small amount of data in a 1 GiB and a 64 GiB image.
for (const size of memorySizes) {
  currentInput = 'spread';
  if (!want('convert') && !want('checksum')) break;
  const raw = makeInput('raw', size, 'spread');
  if (want('checksum')) {
    // A sparse image: the checksum walks the map and hashes only the data (goal: 64 GiB in under a second);
    // qemu-img map of the same image is the floor it is set against.
    const q = makeInput('qcow2', size, 'spread');
    rows.push({ size, input: 'spread', name: 'checksum qcow2 (vs qemu-img map)', ours: best(() => ours(['checksum', q])), qemu: best(() => qemu(['map', q])), note: '' });
    rmSync(q, { force: true });
  }
  for (const fmt of FORMATS) {
    convertCase(size, raw, 'raw', fmt, ['-t', 'unsafe'], '-t unsafe');
    const input = makeInput(fmt, size, 'spread');
    convertCase(size, input, fmt, 'raw', ['-t', 'unsafe'], '-t unsafe');
    rmSync(input, { force: true });
  }
  rmSync(raw, { force: true });
}

const startNode = best(() => timed(process.execPath, ['-e', '0']));
const startOurs = best(() => ours(['--help'], [0, 1]));
console.log(`diskwright vs qemu-img, best of ${repeats}, new target each run; RSS = peak resident memory`);
console.log(`start-up alone: node ${startNode.ms.toFixed(0)} ms, diskwright --help ${startOurs.ms.toFixed(0)} ms (included in every diskwright time)`);
console.log(
  'size'.padEnd(6) + 'input'.padEnd(11) + 'case'.padEnd(36) + 'ours ms'.padStart(9) + 'qemu ms'.padStart(9) + 'ratio'.padStart(7) + 'ours MB'.padStart(9) + 'qemu MB'.padStart(9) + '  note',
);
for (const r of rows) {
  console.log(
    r.size.padEnd(6) +
      r.input.padEnd(11) +
      r.name.padEnd(36) +
      r.ours.ms.toFixed(0).padStart(9) +
      r.qemu.ms.toFixed(0).padStart(9) +
      (r.ours.ms / r.qemu.ms).toFixed(2).padStart(7) +
      r.ours.rss.toFixed(0).padStart(9) +
      r.qemu.rss.toFixed(0).padStart(9) +
      (r.note ? `  ${r.note}` : ''),
  );
}
rmSync(dir, { recursive: true, force: true });
