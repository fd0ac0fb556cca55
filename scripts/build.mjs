// Builds everything the CLI, the browser host and the Electron app run from: dist/main (TypeScript),
// dist/cli (the command line bundled into one file with its code cache, for a quick start; see
// scripts/bundle-cli.mjs), dist/native (the optional hole-seeking addon), dist/renderer (the Vue UI).
// Run by `npm ci` (prepare).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleCli } from './bundle-cli.mjs';
import { ensureElectronTypes } from './electron-types.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const only = process.argv[2]; // main (with the CLI bundle) | cli | native | renderer

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts });
  return r.status === 0;
}

function buildMain() {
  // The Electron code is compiled with the rest when Electron's types can be had; see scripts/electron-types.mjs.
  const project = ensureElectronTypes() ? 'tsconfig.electron.json' : 'tsconfig.node.json';
  if (!run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', project])) process.exit(1);
}

function buildNative() {
  // lseek(SEEK_DATA/SEEK_HOLE/SEEK_END) and qemu-compatible image locks (native/fileops.c). Optional: without a
  // C compiler raw images fall back to zero detection and locking is reported as unavailable.
  const out = join(root, 'dist', 'native');
  mkdirSync(out, { recursive: true });
  const include = join(dirname(dirname(process.execPath)), 'include', 'node');
  if (process.platform !== 'linux' && process.platform !== 'darwin') return;
  const ok = existsSync(join(include, 'node_api.h')) &&
    run('cc', ['-shared', '-fPIC', '-O2', `-I${include}`, '-o', join(out, 'fileops.node'), join(root, 'native', 'fileops.c')], { stdio: 'pipe' });
  if (!ok) console.warn('note: the native file helper was not built (no C compiler or Node headers): raw images fall back to zero detection, and images are not locked');
}

function buildRenderer() {
  if (!existsSync(join(root, 'src-renderer', 'index.html'))) return;
  if (!run(process.execPath, [join(root, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', '--logLevel', 'warn'])) process.exit(1);
}

if (!only || only === 'main') buildMain();
// The native addon first: the bundle's code cache is made by running commands, which load it.
if (!only || only === 'native') buildNative();
// The bundle is made from dist/main, so it follows every compile of dist/main.
if (!only || only === 'main' || only === 'cli') {
  try {
    await bundleCli();
  } catch (err) {
    console.error(`bundling the command line failed: ${err.message}`);
    process.exit(1);
  }
}
if (!only || only === 'renderer') buildRenderer();
