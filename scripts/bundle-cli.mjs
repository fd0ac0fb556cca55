// Bundles the command line into one file, dist/cli/diskwright.js, and writes V8's code cache for it beside it
// (dist/cli/diskwright.js.cache), so that `diskwright info` starts in little more than a bare node start: one
// file read instead of ~100 module look-ups, and no parsing (bin/diskwright.js hands the cache to vm.Script).
//
// The bundle is made from dist/main (tsc's CommonJS output), not from the TypeScript sources: it is then the
// very code dist/main runs, and every require() stays lazy (esbuild wraps each module in a function run on its
// first require), so the `await import()`s that keep a command from loading what it does not use still do.
// npm packages stay outside (required from node_modules on first use, as from dist/main).
//
// Run by scripts/build.mjs after dist/main is compiled. Without esbuild it removes any old bundle and says so:
// bin/diskwright.js then runs dist/main.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const entry = join(root, 'dist', 'main', 'src-main', 'cli', 'main.js');
const outDir = join(root, 'dist', 'cli');
const bundle = join(outDir, 'diskwright.js');
// The same text as bin/diskwright.js's WRAPPER_START / WRAPPER_END.
const WRAPPER_START = '(function (exports, require, module, __filename, __dirname) { ';
const WRAPPER_END = '\n});';

export async function bundleCli() {
  // The old bundle and cache go first: a failure below must not leave a bundle older than dist/main in use.
  rmSync(outDir, { recursive: true, force: true });
  let esbuild;
  try {
    esbuild = createRequire(join(root, 'package.json'))('esbuild');
  } catch {
    console.warn('note: esbuild is not installed: the command line runs from dist/main (slower to start)');
    return false;
  }
  if (!existsSync(entry)) throw new Error(`${entry} is missing: compile dist/main first`);
  mkdirSync(outDir, { recursive: true });
  const tmp = `${bundle}.${process.pid}.tmp`;
  await esbuild.build({
    entryPoints: [entry],
    outfile: tmp,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    packages: 'external',
    legalComments: 'none',
    // Whitespace and syntax only (names stay, so stack traces and constructor names read as in dist/main): a
    // smaller file is read, hashed and scanned faster at every start.
    minifyWhitespace: true,
    minifySyntax: true,
    // Every character outside ASCII escaped (esbuild's default, said here because bin/diskwright.js reads the
    // bundle as latin1, which is right only for ASCII).
    charset: 'ascii',
    // The wrapper Node puts around a CommonJS module is written into the file (bin/diskwright.js compiles the
    // text as it is read: no second 0.8 MB string made by wrapping it at every start), and a fresh id per build,
    // which the code cache names (see loadBundle in bin/diskwright.js).
    banner: { js: WRAPPER_START },
    footer: { js: `${WRAPPER_END}\n//# diskwright-build-id=${randomBytes(16).toString('hex')}` },
    logLevel: 'warning',
  });
  renameSync(tmp, bundle);
  // The code cache is made by running commands in a fresh node (scripts/cli-code-cache.mjs): V8 only caches what
  // it has compiled, and a cache is only taken by a node with the same version and flags as the one that made it.
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'cli-code-cache.mjs')], { cwd: root, stdio: 'inherit', env: { ...process.env, NODE_OPTIONS: '' } });
  if (r.status !== 0) console.warn('note: the code cache of the CLI bundle was not written: the command line starts a little slower');
  return true;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  bundleCli().catch((err) => {
    console.error(`bundling the command line failed: ${err.message}`);
    process.exit(1);
  });
}
