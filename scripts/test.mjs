// `npm test`: provisions the external oracles (qemu-img, qemu-io, uml_mkcow/uml_moo, 7zz, chromium, the file-system tools), builds,
// then runs the suites with Node's test runner. A missing oracle stops the run with a message naming it:
// a suite that silently skips its interop half is not passing.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const which = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
const suites = process.argv.slice(2).length ? process.argv.slice(2) : ['unit', 'interop', 'fuzz', 'crash', 'e2e'];

// command -> Debian package
const TOOLS = {
  'qemu-img': 'qemu-utils', 'qemu-io': 'qemu-utils', uml_mkcow: 'uml-utilities', uml_moo: 'uml-utilities', '7zz': '7zip', chromium: 'chromium',
  // What the inside-the-disk, compaction and LUKS tests build their disks with.
  mke2fs: 'e2fsprogs', debugfs: 'e2fsprogs', filefrag: 'e2fsprogs', sfdisk: 'fdisk', sgdisk: 'gdisk', blkid: 'util-linux', mkswap: 'util-linux',
  'mkfs.vfat': 'dosfstools', mcopy: 'mtools', 'mkfs.ntfs': 'ntfs-3g', ntfscp: 'ntfs-3g', 'mkfs.xfs': 'xfsprogs', 'mkfs.btrfs': 'btrfs-progs',
  cryptsetup: 'cryptsetup-bin',
};
const needed = Object.entries(TOOLS).filter(([cmd]) => (cmd === 'chromium' ? suites.includes('e2e') : suites.some((s) => s !== 'unit')));
let missing = needed.filter(([cmd]) => !which(cmd));
if (missing.length) {
  const pkgs = [...new Set(missing.map(([, p]) => p))];
  const isRoot = process.getuid?.() === 0;
  if (isRoot && which('apt-get')) {
    console.log(`Installing test tools: ${pkgs.join(' ')}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], { stdio: 'inherit', env });
    missing = missing.filter(([cmd]) => !which(cmd));
  }
  if (missing.length) {
    console.error(`The tests need ${missing.map(([c, p]) => `${c} (Debian package ${p})`).join(', ')}. Install them and run again.`);
    process.exit(1);
  }
}

const build = spawnSync(process.execPath, [join(root, 'scripts', 'build.mjs')], { cwd: root, stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);

// A type error anywhere (main, Electron, tests, renderer) fails the run before any test starts.
const typecheck = spawnSync(process.execPath, [join(root, 'scripts', 'typecheck.mjs')], { cwd: root, stdio: 'inherit' });
if (typecheck.status !== 0) process.exit(typecheck.status ?? 1);

// The layering (import boundaries) and lint rules: a violation fails the run before any test starts.
const lint = spawnSync(process.execPath, [join(root, 'node_modules', 'eslint', 'bin', 'eslint.js'), '.'], { cwd: root, stdio: 'inherit' });
if (lint.status !== 0) {
  console.error('lint failed (npm run lint shows the same)');
  process.exit(lint.status ?? 1);
}

const files = [];
for (const suite of suites) {
  const dir = join(root, 'test', suite);
  if (!existsSync(dir)) continue;
  for (const f of readdirSync(dir).sort()) if (f.endsWith('.test.ts')) files.push(join('test', suite, f));
}
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-reporter=spec', ...files], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
