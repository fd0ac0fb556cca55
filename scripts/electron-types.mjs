// Electron is an optional dependency: its install script downloads the Electron binary, which fails on
// machines without access to GitHub, and npm then drops the package (installs still succeed). Its type
// declarations are still needed to type-check src-main/electron, so they are taken from the installed
// package when present, otherwise from the registry tarball of the same version, cached in .cache/.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const ELECTRON_TYPES = join(root, '.cache', 'electron-types', 'electron.d.ts');

function wantedVersion() {
  try {
    const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'));
    const v = lock.packages?.['node_modules/electron']?.version;
    if (v) return v;
  } catch {}
  return JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).optionalDependencies.electron.replace(/^[\^~]/, '');
}

/** Returns true when .cache/electron-types/electron.d.ts is in place. */
export function ensureElectronTypes() {
  const installed = join(root, 'node_modules', 'electron', 'electron.d.ts');
  mkdirSync(dirname(ELECTRON_TYPES), { recursive: true });
  if (existsSync(installed)) {
    copyFileSync(installed, ELECTRON_TYPES);
    return true;
  }
  if (existsSync(ELECTRON_TYPES)) return true;
  const tmp = mkdtempSync(join(tmpdir(), 'dw-electron-'));
  try {
    const v = wantedVersion();
    const pack = spawnSync('npm', ['pack', `electron@${v}`, '--silent', '--pack-destination', tmp], { cwd: tmp, encoding: 'utf8' });
    const tgz = pack.stdout.trim().split('\n').pop();
    if (pack.status !== 0 || !tgz) return false;
    const tar = spawnSync('tar', ['xzf', join(tmp, tgz), '-C', tmp, 'package/electron.d.ts']);
    if (tar.status !== 0) return false;
    copyFileSync(join(tmp, 'package', 'electron.d.ts'), ELECTRON_TYPES);
    return true;
  } catch {
    return false;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const ok = ensureElectronTypes();
  console.log(ok ? `Electron types: ${ELECTRON_TYPES}` : 'Electron types could not be fetched');
  process.exit(ok ? 0 : 1);
}
