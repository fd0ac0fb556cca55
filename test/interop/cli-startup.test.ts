/**
 * The command line's start-up path (bin/diskwright.js): after a build it runs the one-file bundle dist/cli with
 * its V8 code cache; a missing, stale or broken bundle or cache falls back to dist/main with the same output, and
 * with nothing to run the command fails in one plain line. Also that `info` of a qcow2 image loads only what it
 * needs (the lazy loading that keeps start-up short). Needs the build (`node scripts/build.mjs`), as the CLI
 * tests do, and qemu-img (an interop test: what it says about the image is the reference); no timings are
 * asserted here.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, ROOT, must, qemuIo, scratch } from '../helpers';

const BUNDLE = join(ROOT, 'dist', 'cli', 'diskwright.js');
const BUILT = join(ROOT, 'dist', 'main', 'src-main', 'cli', 'main.js');
const s = scratch('dw-startup-');
after(() => s.cleanup());

const image = s.path('small.qcow2');
must('qemu-img', ['create', '-q', '-f', 'qcow2', image, '64M']);
qemuIo(image, 'qcow2', ['write -P 7 64k 192k']);

interface Run {
  status: number;
  stdout: string;
  stderr: string;
  /** What DISKWRIGHT_STARTUP_DEBUG said ran. */
  from: string;
}

function runBin(bin: string, args: string[], env: Record<string, string> = {}): Run {
  const r = spawnSync(process.execPath, [bin, ...args], { env: { ...process.env, DISKWRIGHT_STARTUP_DEBUG: '1', ...env }, encoding: 'utf8' });
  if (r.error) throw r.error;
  const lines = r.stderr.split('\n');
  const from = lines.find((l) => l.startsWith('diskwright: startup: '))?.slice('diskwright: startup: '.length) ?? '';
  return { status: r.status ?? -1, stdout: r.stdout, from, stderr: lines.filter((l) => !l.startsWith('diskwright: startup: ')).join('\n').trim() };
}

/** A copy of the checkout's start-up files in a scratch folder: bin/ copied, the rest linked or written per case. */
function tree(name: string, parts: { bundle?: string | 'copy'; cache?: Buffer | 'copy'; distMain?: boolean }): string {
  const root = s.path(name);
  mkdirSync(join(root, 'bin'), { recursive: true });
  copyFileSync(CLI, join(root, 'bin', 'diskwright.js'));
  mkdirSync(join(root, 'dist', 'cli'), { recursive: true });
  if (parts.distMain) {
    symlinkSync(join(ROOT, 'dist', 'main'), join(root, 'dist', 'main'));
    // block/native.ts finds the native helper from the root a bundle lies under (package.json and native/ mark it).
    symlinkSync(join(ROOT, 'dist', 'native'), join(root, 'dist', 'native'));
    symlinkSync(join(ROOT, 'package.json'), join(root, 'package.json'));
    symlinkSync(join(ROOT, 'native'), join(root, 'native'));
  }
  const bundle = join(root, 'dist', 'cli', 'diskwright.js');
  if (parts.bundle === 'copy') copyFileSync(BUNDLE, bundle);
  else if (parts.bundle !== undefined) writeFileSync(bundle, parts.bundle);
  if (parts.cache === 'copy') copyFileSync(`${BUNDLE}.cache`, `${bundle}.cache`);
  else if (parts.cache !== undefined) writeFileSync(`${bundle}.cache`, parts.cache);
  return join(root, 'bin', 'diskwright.js');
}

test('after a build the CLI runs the bundle with its code cache, and says what qemu-img says about the image', () => {
  assert.ok(existsSync(BUNDLE), `${BUNDLE} is missing: run node scripts/build.mjs`);
  assert.ok(existsSync(`${BUNDLE}.cache`), 'the code cache was not written beside the bundle');
  // vm.Script is given no dynamic-import callback: the bundle must have none left (tsc turns them into require).
  assert.doesNotMatch(readFileSync(BUNDLE, 'utf8'), /\bimport\(/);
  // bin/diskwright.js reads the bundle as latin1, which is the text only where every byte is ASCII.
  assert.ok(readFileSync(BUNDLE).every((b) => b < 0x80), 'the bundle holds bytes outside ASCII');
  const r = runBin(CLI, ['info', '--output', 'json', image]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.from, `bundle ${BUNDLE} (code cache accepted)`);
  const ours = JSON.parse(r.stdout);
  const qemu = JSON.parse(must('qemu-img', ['info', '--output=json', image]).stdout);
  for (const k of ['format', 'virtual-size', 'cluster-size', 'dirty-flag']) assert.deepEqual(ours[k], qemu[k], k);
});

test('the bundle, dist/main and the sources give the same output for info, map and check', () => {
  const distOnly = tree('dist-only', { distMain: true });
  for (const args of [['info', image], ['map', '--output', 'json', image], ['check', '--output', 'json', image], ['--help']]) {
    const bundled = runBin(CLI, args);
    const built = runBin(distOnly, args);
    assert.match(bundled.from, /^bundle /);
    assert.match(built.from, /^dist\/main /);
    assert.deepEqual([built.status, built.stdout, built.stderr], [bundled.status, bundled.stdout, bundled.stderr], args.join(' '));
  }
  const map = runBin(CLI, ['map', '--output', 'json', image]);
  const qemuMap = JSON.parse(must('qemu-img', ['map', '--output=json', image]).stdout);
  const dataOf = (m: Array<{ start: number; length: number; data: boolean }>) => m.filter((e) => e.data).map((e) => [e.start, e.length]);
  assert.deepEqual(dataOf(JSON.parse(map.stdout)), dataOf(qemuMap), 'map agrees with qemu-img map');
  const src = runBin(CLI, ['info', image], { DISKWRIGHT_FROM_SOURCE: '1' });
  assert.match(src.from, /^sources /);
  assert.equal(src.stdout, runBin(CLI, ['info', image]).stdout);
});

test('a broken bundle falls back to dist/main, saying so in one line; a missing or older one silently', () => {
  const corrupt = tree('corrupt', { bundle: 'this is not JavaScript {', distMain: true });
  let r = runBin(corrupt, ['info', image]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.from, /^dist\/main /);
  assert.match(r.stdout, /virtual size: 64 MiB/);
  assert.match(r.stderr, /^diskwright: note: the CLI bundle .* could not be loaded \(.*\); running dist\/main/);
  assert.equal(r.stderr.split('\n').length, 1, r.stderr);

  const wrong = tree('no-exports', { bundle: 'module.exports = { hello: 1 };', distMain: true });
  r = runBin(wrong, ['info', image]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /does not export the command line/);

  const missing = tree('missing', { distMain: true });
  r = runBin(missing, ['info', image]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.from, /^dist\/main /);
  assert.equal(r.stderr, '');

  // A bundle older than dist/main is left from an earlier build: dist/main was compiled again since.
  const older = tree('older', { bundle: 'copy', cache: 'copy', distMain: true });
  const bundle = join(older, '..', '..', 'dist', 'cli', 'diskwright.js');
  const old = new Date(statSync(BUILT).mtimeMs - 3600_000);
  utimesSync(bundle, old, old);
  r = runBin(older, ['info', image]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.from, /^dist\/main /);
  assert.equal(r.stderr, '');
});

test('a stale, truncated or foreign code cache is ignored: the bundle is compiled as it is', () => {
  const cache = readFileSync(`${BUNDLE}.cache`);
  const expected = runBin(CLI, ['info', image]).stdout;
  const cases: Array<[string, Buffer, string]> = [
    ['made for another build', Buffer.concat([Buffer.from(`${'0'.repeat(32)}\n`), cache.subarray(33)]), 'stale'],
    ['truncated', cache.subarray(0, cache.length >> 1), 'rejected'],
    ['not a V8 cache', Buffer.concat([cache.subarray(0, 33), Buffer.alloc(4096, 0x5a)]), 'rejected'],
    ['empty', Buffer.alloc(0), 'stale'],
  ];
  for (const [label, data, verdict] of cases) {
    const bin = tree(`cache-${label.replace(/\W+/g, '-')}`, { bundle: 'copy', cache: data, distMain: true });
    const r = runBin(bin, ['info', image]);
    assert.equal(r.status, 0, `${label}: ${r.stderr}`);
    assert.match(r.from, new RegExp(`^bundle .*\\(code cache ${verdict}\\)$`), label);
    assert.equal(r.stdout, expected, label);
    assert.equal(r.stderr, '', label);
  }
  // The same bundle copied with its own cache takes it: the cache names the bundle's build id.
  const same = runBin(tree('cache-same', { bundle: 'copy', cache: 'copy', distMain: true }), ['info', image]);
  assert.match(same.from, /\(code cache accepted\)$/);
});

test('with nothing to run (no build, no tsx) a command fails in one plain line', () => {
  const bare = tree('bare', {});
  const r = runBin(bare, ['info', image]);
  assert.equal(r.status, 1);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^diskwright: cannot start: there is no build in dist\/ \(run `npm run build`\)/);
  assert.equal(r.stderr.split('\n').length, 1, r.stderr);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
});

test('info of a qcow2 image loads no other format\'s device code, no other command\'s service, and neither crypto nor zlib', () => {
  // In a fresh node, as the CLI runs it; require.cache and process.moduleLoadList say what was loaded.
  const script = `
    const cli = require(${JSON.stringify(BUILT)});
    const io = { out() {}, err() {}, writeOut: async () => {}, readIn: async () => Buffer.alloc(0) };
    cli.runCli(['info', ${JSON.stringify(image)}], io).then((code) => {
      const ours = Object.keys(require.cache).map((f) => f.replace(/\\\\/g, '/')).filter((f) => f.includes('/dist/main/')).map((f) => f.replace(/.*\\/dist\\/main\\//, ''));
      process.stdout.write(JSON.stringify({ code, ours, builtins: process.moduleLoadList }));
    });`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const { code, ours, builtins } = JSON.parse(r.stdout) as { code: number; ours: string[]; builtins: string[] };
  assert.equal(code, 0);
  const light = /\/(driver|layout|create-options)\.js$/;
  const otherFormats = ours.filter((f) => /^src-main\/formats\/(vmdk|vhdx|parallels|cow)\//.test(f) && !light.test(f));
  assert.deepEqual(otherFormats, [], 'only the probe and option list of the formats info did not open');
  const services = ours.filter((f) => f.startsWith('src-main/services/'));
  assert.deepEqual(services.filter((f) => !/\/(info|options)\.js$/.test(f)), [], 'services other than info (and the option parser)');
  assert.ok(services.includes('src-main/services/info.js'));
  for (const mod of ['NativeModule crypto', 'NativeModule zlib']) assert.ok(!builtins.includes(mod), `${mod} was loaded`);
});
