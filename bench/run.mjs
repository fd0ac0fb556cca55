// Side-by-side timings of diskwright and qemu-img on the same inputs, printed as ratios (ours / qemu's;
// below 1.00 means we are faster). Run: npm run bench [-- --size 1G]. Nothing here asserts a timing.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'bin', 'diskwright.js');
const sizeArg = process.argv.indexOf('--size');
const size = sizeArg > 0 ? process.argv[sizeArg + 1] : '512M';
const repeats = 3;
const dir = mkdtempSync(join(tmpdir(), 'dw-bench-'));

function sh(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0 && !(cmd === 'qemu-img' && args[0] === 'compare') && !(args[1] === 'compare')) {
    throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  }
  return r;
}
function best(fn) {
  let min = Infinity;
  for (let i = 0; i < repeats; i++) {
    const t = process.hrtime.bigint();
    fn();
    min = Math.min(min, Number(process.hrtime.bigint() - t) / 1e6);
  }
  return min;
}

/** An image with data in every other MiB, some zero runs and holes, as qemu-io writes it. */
function makeInput(fmt) {
  const p = join(dir, `input.${fmt}`);
  sh('qemu-img', ['create', '-q', '-f', fmt, p, size]);
  const bytes = spawnSync('qemu-img', ['info', '--output', 'json', p], { encoding: 'utf8' });
  const vsize = JSON.parse(bytes.stdout)['virtual-size'];
  const cmds = [];
  for (let off = 0; off < vsize; off += 2 * 1024 * 1024) cmds.push('-c', `write -P ${(off >> 20) & 0xff} ${off} 1M`);
  sh('qemu-io', ['-f', fmt, ...cmds, p]);
  return p;
}

const cases = [];
const formats = process.argv.includes('--qcow2') ? ['raw', 'qcow2'] : ['raw', ...(canReadQcow2() ? ['qcow2'] : [])];
function canReadQcow2() {
  const p = join(dir, 'probe.qcow2');
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', p, '1M']);
  return spawnSync(process.execPath, [cli, 'read', p, '0', '512', join(dir, 'probe.out')]).status === 0;
}

for (const fmt of formats) {
  const input = makeInput(fmt);
  for (const outFmt of ['raw', 'qcow2']) {
    const ours = join(dir, `ours.${outFmt}`);
    const theirs = join(dir, `theirs.${outFmt}`);
    let tOurs;
    try {
      tOurs = best(() => sh(process.execPath, [cli, 'convert', '-f', fmt, '-O', outFmt, input, ours]));
    } catch (err) {
      cases.push([`convert ${fmt} -> ${outFmt}: not possible yet (${String(err.message).split('\n')[0].slice(-80)})`, NaN, NaN]);
      continue;
    }
    const tQemu = best(() => sh('qemu-img', ['convert', '-f', fmt, '-O', outFmt, input, theirs]));
    cases.push([`convert ${fmt} -> ${outFmt}`, tOurs, tQemu]);
    if (outFmt === 'qcow2' && spawnSync('qemu-img', ['check', '-q', ours]).status !== 0) cases.push([`  (our ${outFmt} output failed qemu-img check)`, NaN, NaN]);
  }
  const tMapOurs = best(() => sh(process.execPath, [cli, 'map', '--output', 'json', input]));
  const tMapQemu = best(() => sh('qemu-img', ['map', '--output', 'json', input]));
  cases.push([`map ${fmt}`, tMapOurs, tMapQemu]);
  const copy = join(dir, `copy.${fmt}`);
  sh('qemu-img', ['convert', '-f', fmt, '-O', fmt, input, copy]);
  const tCmpOurs = best(() => sh(process.execPath, [cli, 'compare', input, copy]));
  const tCmpQemu = best(() => sh('qemu-img', ['compare', input, copy]));
  cases.push([`compare ${fmt}`, tCmpOurs, tCmpQemu]);
}

console.log(`diskwright vs qemu-img, ${size} images with data in every other MiB, best of ${repeats}`);
console.log('case'.padEnd(28) + 'diskwright ms'.padStart(14) + 'qemu-img ms'.padStart(13) + 'ratio'.padStart(8));
for (const [name, a, b] of cases) {
  console.log(name.padEnd(28) + a.toFixed(0).padStart(14) + b.toFixed(0).padStart(13) + (a / b).toFixed(2).padStart(8));
}
rmSync(dir, { recursive: true, force: true });
