// Encryption speed: the sector ciphers alone (MB/s), and LUKS qcow2 writes and reads of the real ext4 image,
// ours through the qcow2 driver against qemu-img convert with --object secret on the same input (ratios:
// ours / qemu's; below 1.00 we are faster). Nothing asserts a timing. Every output is checked by qemu-img
// (compare with the secret), so a fast wrong answer cannot pass.
//
//   node --import tsx bench/crypto.mjs                 256 MiB fs image, best of 3
//   node --import tsx bench/crypto.mjs --size 1G --repeats 5
import './node-env.mjs';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, openSync, readSync, closeSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeExt4Image } from '../test/fixtures/fs-image.ts';
import { createRequire } from 'node:module';

// The engine as it ships (dist/, built by `npm run build`): through tsx, the qcow2 device's lazy import of its
// encryption module fails from an .mjs entry point.
const require = createRequire(import.meta.url);
const { SectorCipher } = require('../dist/main/src-main/crypto/sector-cipher.js');
const { createQcow2 } = require('../dist/main/src-main/formats/qcow2/create.js');
const { openQcow2 } = require('../dist/main/src-main/formats/qcow2/device.js');

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
};
const size = arg('--size', '256M');
const repeats = Number(arg('--repeats', '3'));
const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'dw-bench-crypto-'));
const PASS = 'bench passphrase';
const passFile = join(dir, 'pass');
writeFileSync(passFile, PASS);
const SECRET = `secret,id=s0,file=${passFile}`;
const ITER_TIME = 100;

function sh(cmd, args) {
  for (let attempt = 1; ; attempt++) {
    const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 28 });
    if (r.status === 0) return r;
    // qemu-img's PBKDF2 benchmark gives up now and then on a busy machine: that alone is run again.
    if (attempt < 4 && /Unable to get accurate CPU usage/.test(r.stderr ?? '')) continue;
    throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error}`);
  }
}
async function best(fn) {
  let min = Infinity;
  for (let i = 0; i < repeats; i++) {
    const t = performance.now();
    await fn();
    min = Math.min(min, performance.now() - t);
  }
  return min;
}

console.log('sector ciphers, 2 MiB runs, MB/s:');
const run = randomBytes(2 << 20);
for (const spec of [
  { alg: 'aes-256', mode: 'xts', ivgen: 'plain64' },
  { alg: 'aes-128', mode: 'xts', ivgen: 'plain64' },
  { alg: 'aes-256', mode: 'cbc', ivgen: 'essiv', ivgenHash: 'sha256' },
  { alg: 'aes-128', mode: 'cbc', ivgen: 'plain64' },
]) {
  const bytes = Number(spec.alg.split('-')[1]) / 8;
  const c = new SectorCipher(spec, randomBytes(spec.mode === 'xts' ? bytes * 2 : bytes));
  const row = [];
  for (const dir of ['encrypt', 'decrypt']) {
    const total = 256 << 20;
    const ms = await best(async () => {
      for (let done = 0, s = 0; done < total; done += run.length, s += run.length / 512) c[dir](run, s);
    });
    row.push(`${dir} ${((total / (1 << 20)) / (ms / 1000)).toFixed(0)}`);
  }
  c.close();
  console.log(`  ${spec.alg}-${spec.mode}-${spec.ivgen}${spec.ivgenHash ? ':' + spec.ivgenHash : ''}: ${row.join(', ')}`);
}

const raw = join(dir, 'fs.raw');
const bytesWanted = Math.floor(0.33 * Number(JSON.parse(sh('qemu-img', ['measure', '--output', 'json', '-O', 'raw', '--size', size]).stdout)['fully-allocated']));
makeExt4Image(raw, join(dir, 'tree'), size, { seed: 1, bytes: bytesWanted });
rmSync(join(dir, 'tree'), { recursive: true, force: true });
const rawSize = statSync(raw).size;
const opts = (readOnly) => ({ readOnly, backingPolicy: 'none', openBacking: async () => { throw new Error('none'); }, passphrase: Buffer.from(PASS) });
const imageOpts = (p) => `driver=qcow2,file.filename=${p},encrypt.key-secret=s0`;

// Write: raw -> LUKS qcow2. qemu-img convert; ours: create, then the raw image's non-zero clusters written in 2 MiB pieces.
const qOut = join(dir, 'qemu.qcow2');
const ourOut = join(dir, 'ours.qcow2');
const qWrite = await best(async () => {
  rmSync(qOut, { force: true });
  sh('qemu-img', ['convert', '-t', 'writeback', '--object', SECRET, '-O', 'qcow2', '-o', `encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=${ITER_TIME}`, raw, qOut]);
});
const ourWrite = await best(async () => {
  rmSync(ourOut, { force: true });
  await createQcow2(ourOut, rawSize, { options: { 'encrypt.format': 'luks', 'encrypt.key-secret': 's0', 'encrypt.iter-time': ITER_TIME }, passphrase: Buffer.from(PASS) });
  const dev = await openQcow2(ourOut, opts(false));
  const fd = openSync(raw, 'r');
  const buf = Buffer.alloc(2 << 20);
  for (let pos = 0; pos < rawSize; pos += buf.length) {
    const n = readSync(fd, buf, 0, Math.min(buf.length, rawSize - pos), pos);
    for (let c = 0; c < n; c += 65536) {
      const piece = buf.subarray(c, Math.min(n, c + 65536));
      if (piece.some((b) => b !== 0)) await dev.write(pos + c, piece);
    }
  }
  closeSync(fd);
  await dev.flush();
  await dev.close();
});
sh('qemu-img', ['compare', '--object', SECRET, '--image-opts', imageOpts(ourOut), `driver=raw,file.filename=${raw}`]);

// Read: LUKS qcow2 (qemu's) -> whole guest. qemu-img convert -O raw; ours: read the whole guest in 2 MiB pieces.
const qRaw = join(dir, 'qemu-read.raw');
const qRead = await best(async () => {
  rmSync(qRaw, { force: true });
  sh('qemu-img', ['convert', '-t', 'unsafe', '--object', SECRET, '--image-opts', imageOpts(qOut), '-O', 'raw', qRaw]);
});
const ourRead = await best(async () => {
  const dev = await openQcow2(qOut, opts(true));
  const buf = Buffer.alloc(2 << 20);
  for (let pos = 0; pos < dev.size; pos += buf.length) await dev.read(pos, buf.subarray(0, Math.min(buf.length, dev.size - pos)));
  await dev.close();
});
// Both include one LUKS unlock (PBKDF2 at iter-time ${ITER_TIME} ms on qemu's measure, ours on ours).
console.log(`LUKS qcow2 of the ${size} fs image (${(bytesWanted / (1 << 20)).toFixed(0)} MiB of files), best of ${repeats}:`);
console.log(`  write: ours ${ourWrite.toFixed(0)} ms, qemu-img ${qWrite.toFixed(0)} ms, ratio ${(ourWrite / qWrite).toFixed(2)}`);
console.log(`  read:  ours ${ourRead.toFixed(0)} ms, qemu-img ${qRead.toFixed(0)} ms, ratio ${(ourRead / qRead).toFixed(2)}`);

// The same through the command lines, flag for flag (process start and the one LUKS unlock included): diskwright
// convert against qemu-img convert, encrypting the raw image and decrypting qemu's LUKS image.
const CLI = join(import.meta.dirname, '..', 'bin', 'diskwright.js');
const cliOut = join(dir, 'cli.qcow2');
const encryptArgs = (out) => ['convert', '-t', 'writeback', '--object', SECRET, '-O', 'qcow2', '-o', `encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=${ITER_TIME}`, raw, out];
const cliWrite = await best(async () => {
  rmSync(cliOut, { force: true });
  sh(process.execPath, [CLI, ...encryptArgs(cliOut)]);
});
sh('qemu-img', ['compare', '--object', SECRET, '--image-opts', imageOpts(cliOut), `driver=raw,file.filename=${raw}`]);
const cliRaw = join(dir, 'cli-read.raw');
const cliRead = await best(async () => {
  rmSync(cliRaw, { force: true });
  sh(process.execPath, [CLI, 'convert', '-t', 'unsafe', '--object', SECRET, '--image-opts', imageOpts(qOut), '-O', 'raw', cliRaw]);
});
sh('cmp', [cliRaw, qRaw]);
console.log(`the command lines (convert, ${ITER_TIME} ms iter-time):`);
console.log(`  encrypt: diskwright ${cliWrite.toFixed(0)} ms, qemu-img ${qWrite.toFixed(0)} ms, ratio ${(cliWrite / qWrite).toFixed(2)}`);
console.log(`  decrypt: diskwright ${cliRead.toFixed(0)} ms, qemu-img ${qRead.toFixed(0)} ms, ratio ${(cliRead / qRead).toFixed(2)}`);
rmSync(dir, { recursive: true, force: true });
