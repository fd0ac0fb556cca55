/**
 * The command line's start-up path (bin/diskwright.js): after a build it runs the pack in dist/cli with its V8
 * code caches (info's modules in diskwright.js, map's, check's and the rest's in parts read when first needed);
 * a missing, stale or broken pack or cache falls back to dist/main with the same output, a missing or foreign
 * part fails in one plain line, and with nothing to run the command fails in one plain line. Also that `info` of a qcow2 image loads only what it
 * needs (the lazy loading that keeps start-up short). Needs the build (`node scripts/build.mjs`), as the CLI
 * tests do, and qemu-img (an interop test: what it says about the image is the reference); no timings are
 * asserted here.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
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
  /** The pack's parts the command read, as DISKWRIGHT_STARTUP_DEBUG said at exit. */
  parts: string;
}

function runBin(bin: string, args: string[], env: Record<string, string> = {}): Run {
  const r = spawnSync(process.execPath, [bin, ...args], { env: { ...process.env, DISKWRIGHT_STARTUP_DEBUG: '1', ...env }, encoding: 'utf8' });
  if (r.error) throw r.error;
  const lines = r.stderr.split('\n');
  const said = lines.filter((l) => l.startsWith('diskwright: startup: ')).map((l) => l.slice('diskwright: startup: '.length));
  const parts = said.find((l) => l.startsWith('parts loaded: '))?.slice('parts loaded: '.length) ?? '';
  const from = said.find((l) => !l.startsWith('parts loaded: ')) ?? '';
  return { status: r.status ?? -1, stdout: r.stdout, from, parts, stderr: lines.filter((l) => !l.startsWith('diskwright: startup: ')).join('\n').trim() };
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
  for (const f of readdirSync(join(ROOT, 'dist', 'cli')).filter((n) => n.endsWith('.js'))) {
    assert.doesNotMatch(readFileSync(join(ROOT, 'dist', 'cli', f), 'utf8'), /\bimport\(/, f);
    assert.ok(readFileSync(join(ROOT, 'dist', 'cli', f)).every((b) => b < 0x80), `${f} holds bytes outside ASCII`);
  }
  const r = runBin(CLI, ['info', '--output', 'json', image]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.from, `bundle ${BUNDLE} (code cache accepted)`);
  // info reads the first file only: that is what the split is for.
  assert.equal(r.parts, 'none');
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

test('map, check and a convert read the parts they need, with their code caches, and agree with dist/main and qemu-img', () => {
  const distOnly = tree('dist-only-parts', { distMain: true });
  assert.equal(runBin(CLI, ['map', image]).parts, 'map (code cache accepted)');
  assert.equal(runBin(CLI, ['check', image]).parts, 'check (code cache accepted)');
  // convert runs code that no warm-up command ran: the "more" part, whose cache holds no compiled function.
  const outs = [s.path('parts-bundle.vdi'), s.path('parts-dist.vdi')];
  const bundled = runBin(CLI, ['convert', '-O', 'vdi', image, outs[0]]);
  const built = runBin(distOnly, ['convert', '-O', 'vdi', image, outs[1]]);
  assert.equal(bundled.status, 0, bundled.stderr);
  assert.equal(built.status, 0, built.stderr);
  assert.match(bundled.parts, /\bmore \(code cache accepted\)/);
  for (const out of outs) must('qemu-img', ['compare', '-q', image, out]);
});

test('a part missing or from another build fails the command in one plain line', () => {
  const bin = tree('parts-broken', { bundle: 'copy', cache: 'copy', distMain: true });
  const cliDir = join(bin, '..', '..', 'dist', 'cli');
  // map's part from another build: the same text with another id.
  writeFileSync(join(cliDir, 'diskwright-map.js'), readFileSync(join(ROOT, 'dist', 'cli', 'diskwright-map.js'), 'latin1').replace(/diskwright-build-id=[0-9a-f]{32}/, `diskwright-build-id=${'0'.repeat(32)}`));
  for (const [args, words] of [
    [['map', image], /diskwright-map\.js is from another build \(run `npm run build`\)$/],
    [['check', image], /diskwright-check\.js cannot be read \(ENOENT; run `npm run build`\)$/],
  ] as const) {
    const r = runBin(bin, [...args]);
    assert.equal(r.status, 1, args.join(' '));
    assert.equal(r.stdout, '');
    assert.match(r.stderr, words);
    assert.equal(r.stderr.split('\n').length, 1, r.stderr);
  }
  // info needs neither.
  assert.equal(runBin(bin, ['info', image]).status, 0);
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

test('info, map and check as the command line runs them (blocking I/O) do not load node:fs/promises', () => {
  // Its first use compiles readline, the file watchers and directory streams: 2 ms of every start (block/open-file.ts).
  const preload = s.path('module-list.js');
  writeFileSync(preload, "process.on('exit', () => process.stderr.write('\\nMODULES ' + JSON.stringify(process.moduleLoadList) + '\\n'));\n");
  for (const args of [['info', image], ['map', image], ['check', image]]) {
    const r = spawnSync(process.execPath, ['-r', preload, CLI, ...args], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const line = r.stderr.split('\n').find((l) => l.startsWith('MODULES '));
    assert.ok(line, r.stderr);
    const loaded = JSON.parse(line.slice('MODULES '.length)) as string[];
    assert.ok(loaded.includes('NativeModule vm'), 'the list is the one of a run of the pack');
    assert.ok(!loaded.includes('NativeModule internal/fs/promises'), `${args[0]} loaded node:fs/promises`);
  }
});
