// `npm start`: the Electron app when Electron's binary is installed, otherwise the browser host (the same
// UI served on 127.0.0.1) with the address to open. Builds first when dist/ is missing.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const hostEntry = join(root, 'dist', 'main', 'src-main', 'host', 'main.js');
const electronEntry = join(root, 'dist', 'main', 'src-main', 'electron', 'main.js');
const rendererIndex = join(root, 'dist', 'renderer', 'index.html');

/** The Electron binary's path, or why there is none. The electron package's main export is that path. */
function findElectron() {
  try {
    const bin = require('electron');
    if (typeof bin === 'string' && existsSync(bin)) return { bin };
    return { why: `the electron package points at ${bin}, which does not exist` };
  } catch (err) {
    const text = String(err?.message ?? err);
    if (err?.code === 'MODULE_NOT_FOUND') return { why: 'the electron package is not installed (it is optional)' };
    return { why: `its binary is not installed (${text.split('\n')[0]})` };
  }
}

const electron = findElectron();
const needed = [rendererIndex, electron.bin ? electronEntry : hostEntry];
if (needed.some((f) => !existsSync(f))) {
  console.log('Building diskwright first…');
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'build.mjs')], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

function run(cmd, args) {
  const child = spawn(cmd, args, { cwd: root, stdio: 'inherit' });
  // Ctrl+C reaches the child through the terminal; pass on a plain kill too.
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}

if (electron.bin && existsSync(electronEntry)) {
  run(electron.bin, [root, ...process.argv.slice(2)]);
} else {
  console.log(`Electron is not available here: ${electron.why ?? 'the app was built without it'}.`);
  console.log('Serving the same window to a browser instead.\n');
  run(process.execPath, [hostEntry, ...process.argv.slice(2)]);
}
