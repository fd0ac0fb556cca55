#!/usr/bin/env node
// The diskwright command line. Start-up time counts (info of a small image should cost little more than a bare
// node start), so it runs, in this order of preference:
//   1. dist/cli/diskwright.js: the CLI packed by scripts/bundle-cli.mjs (info's modules in this file, the others
//      in parts read when first needed), compiled with the V8 code cache written beside it at build time (one
//      file read and no module resolution, no parsing);
//   2. dist/main (the compiled TypeScript, one module per file), when the bundle is missing, older than
//      dist/main, or cannot be loaded;
//   3. the TypeScript sources through tsx, in a checkout without a build (or with DISKWRIGHT_FROM_SOURCE set).
// DISKWRIGHT_STARTUP_DEBUG=1 says on stderr which one ran and whether the code cache was taken.
'use strict';
const path = require('node:path');
const fs = require('node:fs');

const root = path.join(__dirname, '..');
const BUNDLE = path.join(root, 'dist', 'cli', 'diskwright.js');
const BUILT = path.join(root, 'dist', 'main', 'src-main', 'cli', 'main.js');
const SOURCE = path.join(root, 'src-main', 'cli', 'main.ts');

/**
 * Compiles and runs the bundle as Node would run a CommonJS module, but through vm.Script so that V8's code
 * cache can be handed in. The bundle ends with a build id (a random one per build) and the cache file starts with
 * the id of the bundle it was made for: V8 itself compares only the source's length, so a rebuilt bundle of the
 * same length would otherwise be run with the old one's compiled code. V8 then checks its own version and flags
 * and rejects a mismatching cache (cachedDataRejected): the bundle is simply compiled. A cache that cannot be
 * read is no cache.
 */
const WRAPPER_START = '(function (exports, require, module, __filename, __dirname) { ';
const WRAPPER_END = '\n});';
const BUILD_ID = /\/\/# diskwright-build-id=([0-9a-f]{32})\s*$/;
function buildId(source) {
  const m = BUILD_ID.exec(source.slice(-100));
  return m ? m[1] : undefined;
}

/** Reads the file behind `fd` (`size` bytes) into the start of `buf`: a view of what was read. */
function readInto(fd, buf, size) {
  let done = 0;
  while (done < size) {
    const n = fs.readSync(fd, buf, done, size - done, done);
    if (n === 0) break;
    done += n;
  }
  return buf.subarray(0, done);
}

/**
 * Compiles `file` with its code cache (`file`.cache, taken only when it names the file's build id): the script,
 * the file's build id and what became of the cache. `wrap` puts Node's CommonJS wrapper around a text that lacks
 * it. Also how the pack's loader compiles its parts (module.compilePart, below).
 */
function compileCached(file, useCache, wrap) {
  const vm = require('node:vm');
  const sourceFd = fs.openSync(file, 'r');
  let cacheFd;
  if (useCache) {
    try {
      cacheFd = fs.openSync(file + '.cache', 'r');
    } catch {
      cacheFd = undefined;
    }
  }
  let source;
  let data;
  try {
    // One buffer holds the file's bytes, then, once they are a string, its cache's: each fresh page costs a fault
    // (~12 us here) and the two are about the same size (a buffer each was ~55 more faults of an info).
    const sourceSize = fs.fstatSync(sourceFd).size;
    const cacheSize = cacheFd === undefined ? 0 : fs.fstatSync(cacheFd).size;
    const buf = Buffer.allocUnsafeSlow(Math.max(sourceSize, cacheSize));
    // latin1: the bundle is ASCII (scripts/bundle-cli.mjs has esbuild escape everything else), and decoding it as
    // latin1 makes the one-byte string straight from the bytes, where utf8 touches 0.8 MB more (~190 page faults).
    source = readInto(sourceFd, buf, sourceSize).toString('latin1');
    if (cacheFd !== undefined) {
      try {
        data = readInto(cacheFd, buf, cacheSize);
      } catch {
        data = undefined;
      }
    }
  } finally {
    fs.closeSync(sourceFd);
    if (cacheFd !== undefined) fs.closeSync(cacheFd);
  }
  const id = buildId(source);
  let cachedData;
  let cache = 'none';
  if (data !== undefined) {
    cache = 'stale';
    // The file: the build id (32 hex digits), a newline, then what V8 gave.
    if (id !== undefined && data.length > 33 && data.toString('latin1', 0, 33) === `${id}\n`) cachedData = data.subarray(33);
  }
  // The wrapper Node puts around a CommonJS module (on the source's first line, so line numbers stay true):
  // scripts/bundle-cli.mjs writes it into the bundle, so the text read is compiled as it is; another file is
  // wrapped here.
  const wrapped = !wrap || source.startsWith(WRAPPER_START) ? source : `${WRAPPER_START}${source}${WRAPPER_END}`;
  const script = new vm.Script(wrapped, { filename: file, cachedData });
  if (cachedData !== undefined) cache = script.cachedDataRejected ? 'rejected' : 'accepted';
  return { script, id, cache };
}

function loadBundle(file, useCache = true) {
  const Module = require('node:module');
  const { script, id, cache } = compileCached(file, useCache, true);
  // compilePart: how the pack's loader (scripts/bundle-cli.mjs) compiles its other files, the same way.
  const mod = { exports: {}, filename: file, id: file, loaded: false, compilePart: (part) => compileCached(part, useCache, false) };
  script.runInThisContext().call(mod.exports, mod.exports, Module.createRequire(file), mod, file, path.dirname(file));
  mod.loaded = true;
  if (typeof mod.exports.main !== 'function' || typeof mod.exports.runCli !== 'function') throw new Error('it does not export the command line');
  // pack: the loader's view of the modules (scripts/bundle-cli.mjs), when the file is a pack.
  return { cli: mod.exports, script, cache, id, pack: mod.pack };
}

function mtime(file) {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
}

/** The command line module to run, and a word on where it came from. */
async function chooseCli() {
  const note = (s) => process.stderr.write(`diskwright: note: ${s}\n`);
  if (!process.env.DISKWRIGHT_FROM_SOURCE) {
    const bundled = mtime(BUNDLE);
    const built = mtime(BUILT);
    // A bundle older than dist/main was left by an earlier build (dist/main was compiled again without it).
    if (bundled !== undefined && (built === undefined || bundled >= built)) {
      try {
        const b = loadBundle(BUNDLE);
        return { cli: b.cli, from: `bundle ${BUNDLE} (code cache ${b.cache})`, pack: b.pack };
      } catch (err) {
        note(`the CLI bundle ${BUNDLE} could not be loaded (${err && err.message ? err.message : String(err)}); running dist/main (run \`npm run build\` to rebuild it)`);
      }
    }
    if (built !== undefined) return { cli: require(BUILT), from: `dist/main ${BUILT}` };
  }
  try {
    require.resolve('tsx/cjs');
  } catch {
    throw new Error('cannot start: there is no build in dist/ (run `npm run build`) and tsx, which runs the TypeScript sources, is not installed');
  }
  // Both of tsx's hooks: require() for the static imports, and import() for the modules loaded on first use.
  require('tsx/cjs');
  await import('tsx/esm');
  return { cli: require(SOURCE), from: `sources ${SOURCE}` };
}

if (require.main === module) {
  chooseCli()
    .then((chosen) => {
      if (process.env.DISKWRIGHT_STARTUP_DEBUG) {
        process.stderr.write(`diskwright: startup: ${chosen.from}\n`);
        // Which of the pack's other files the command read (info should read none).
        const pack = chosen.pack;
        if (pack) process.on('exit', () => process.stderr.write(`diskwright: startup: parts loaded: ${pack.loadedParts().map((p) => `${p.name} (code cache ${p.cache})`).join(', ') || 'none'}\n`));
      }
      return chosen.cli.main();
    })
    .catch((err) => {
      process.stderr.write(`diskwright: ${err && err.message ? err.message : String(err)}\n`);
      process.exitCode = 1;
    });
} else {
  // scripts/bundle-cli.mjs loads the bundle exactly as above to write its code cache.
  module.exports = { loadBundle, BUNDLE };
}
