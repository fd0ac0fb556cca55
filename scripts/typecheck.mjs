// Type-checks every project without emitting: main + Electron (or main alone when Electron's types cannot
// be had), the unit/interop tests, the end-to-end tests, and the Vue renderer (vue-tsc). `npm test` runs
// this first so that a type error fails the run.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureElectronTypes } from './electron-types.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const vueTsc = join(root, 'node_modules', 'vue-tsc', 'bin', 'vue-tsc.js');

const mainProject = ensureElectronTypes() ? 'tsconfig.electron.json' : 'tsconfig.node.json';
if (mainProject !== 'tsconfig.electron.json') console.warn('note: Electron types could not be had; src-main/electron and the preload are not type-checked');

const checks = [
  [tsc, mainProject],
  [tsc, 'tsconfig.test.json'],
  [tsc, join('test', 'e2e', 'tsconfig.json')],
  [vueTsc, 'tsconfig.web.json'],
].filter(([, project]) => existsSync(join(root, project)));

function check([bin, project]) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, '-p', project, '--noEmit', '--pretty', 'false'], { cwd: root });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => resolve({ project, ok: code === 0, out }));
  });
}

// Two at a time: the machines this runs on have two cores.
const results = [];
for (let i = 0; i < checks.length; i += 2) results.push(...(await Promise.all(checks.slice(i, i + 2).map(check))));
let failed = 0;
for (const r of results) {
  console.log(`typecheck ${r.project}: ${r.ok ? 'ok' : 'FAILED'}`);
  if (!r.ok) {
    failed++;
    process.stdout.write(r.out);
  }
}
process.exit(failed ? 1 : 0);
