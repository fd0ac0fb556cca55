// Packs the command line into a few files with V8's code cache beside each, so that `diskwright info` starts in
// little more than a bare node start (one file read instead of ~100 module look-ups, and no parsing):
//   dist/cli/diskwright.js        the modules `info` and `--help` run (found by running them, see assignParts)
//                                 and the small loader that runs them;
//   dist/cli/diskwright-map.js    what `map` runs beyond those, and diskwright-check.js what `check` runs;
//   dist/cli/diskwright-more.js   every other module, read the first time one of them is required (by convert,
//                                 create, snapshot...).
// Each part is read the first time one of its modules is required.
// Why parts: with a code cache V8 does not parse the text, but it still needs it whole in memory, and on this kind
// of machine every fresh page costs (~12 us, docs/performance.md): the one 0.82 MB bundle esbuild made cost
// ~400 page faults to read and hold, about 5 ms of an `info` whose whole overhead above node is ~30 ms. info's
// part is ~0.2 MB.
//
// The pack is made from dist/main (tsc's CommonJS output), not from the TypeScript sources: it is then the very
// code dist/main runs, module by module. Each module becomes a function called on its first require, as Node
// would (the loader below resolves the relative require()s tsc writes; npm packages and node: built-ins go to
// Node's require), so the lazy require()s that keep a command from loading what it does not use still do.
// esbuild only minifies each module (whitespace and syntax; names kept, so stack traces and constructor names
// read as in dist/main).
//
// Run by scripts/build.mjs after dist/main is compiled. Without esbuild it removes any old pack and says so:
// bin/diskwright.js then runs dist/main.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const distMain = join(root, 'dist', 'main');
const ENTRY = 'src-main/cli/main.js';
const outDir = join(root, 'dist', 'cli');
const bundle = join(outDir, 'diskwright.js');
const cacheScript = join(root, 'scripts', 'cli-code-cache.mjs');
// scripts/cli-code-cache.mjs's groups of warm-up commands ('quick' first).
const WARM_UP_GROUPS = ['quick', 'map', 'check'];
// The same text as bin/diskwright.js's WRAPPER_START / WRAPPER_END: the wrapper Node puts around a CommonJS
// module, written into the file so that bin/diskwright.js compiles the text as it is read (no second string).
const WRAPPER_START = '(function (exports, require, module, __filename, __dirname) { ';
const WRAPPER_END = '\n});';

/**
 * The loader at the head of dist/cli/diskwright.js. `define` names each module's function; `load` runs it once
 * (a module that throws is forgotten, as Node forgets it); a relative require names a module by the id the pack
 * resolved it to. A module not in this file is in the file PART_OF names, read (once, with its code cache, by
 * bin/diskwright.js's compileCached, handed in as module.compilePart) when the first of its modules is required.
 * module.pack is how bin/diskwright.js and scripts/cli-code-cache.mjs see what was loaded.
 */
const LOADER = `"use strict";
var DIST = __dirname.slice(0, Math.max(__dirname.lastIndexOf("/"), __dirname.lastIndexOf("\\\\")));
var MAIN_DIR = DIST + "/main";
var factories = new Map(), loaded = new Map(), parts = new Map();
function define(id, dependencies, factory) { factories.set(id, { dependencies: dependencies, factory: factory }); }
function loadPart(name) {
  var part = parts.get(name);
  if (part !== undefined) return part;
  var file = __dirname + "/diskwright-" + name + ".js";
  var compiled;
  try { compiled = module.compilePart(file); }
  catch (err) { throw new Error("the command line's build is incomplete: " + file + " cannot be read (" + (err.code || err.message) + "; run \`npm run build\`)"); }
  if (compiled.id !== BUILD_ID) throw new Error("the command line's build is mixed: " + file + " is from another build (run \`npm run build\`)");
  part = { name: name, cache: compiled.cache, script: compiled.script };
  part.script.runInThisContext()(define);
  parts.set(name, part);
  return part;
}
function requireFrom(dependencies) {
  return function (spec) {
    var id = dependencies[spec];
    return id === undefined ? require(spec) : load(id);
  };
}
function load(id) {
  var m = loaded.get(id);
  if (m !== undefined) return m.exports;
  if (!factories.has(id) && PART_OF[id] !== undefined) loadPart(PART_OF[id]);
  var f = factories.get(id);
  if (f === undefined) throw new Error("the CLI pack has no module " + id + " (run \`npm run build\`)");
  m = { exports: {} };
  loaded.set(id, m);
  // Paths by concatenation (forward slashes work on every platform): path.join's normalising, for each of ~90
  // modules, measured 4 ms of an info.
  var file = MAIN_DIR + "/" + id;
  try { f.factory.call(m.exports, m.exports, requireFrom(f.dependencies), m, file, file.slice(0, file.lastIndexOf("/"))); }
  catch (err) { loaded.delete(id); throw err; }
  return m.exports;
}
module.pack = {
  loadedModules: function () { return Array.from(loaded.keys()); },
  loadedParts: function () { return Array.from(parts.values()); },
  partNames: function () { return Array.from(new Set(Object.values(PART_OF))); },
  loadPart: loadPart,
};
`;

/**
 * The modules the entry reaches through relative require()s, each minified: id (path under dist/main) ->
 * { code, dependencies: each relative require's text -> the id it names }, resolved here as Node resolves them,
 * so that the loader only looks them up.
 */
function collectModules(esbuild) {
  const modules = new Map();
  const queue = [ENTRY];
  while (queue.length) {
    const id = queue.shift();
    if (modules.has(id)) continue;
    const text = readFileSync(join(distMain, id), 'utf8').replace(/^\/\/# sourceMappingURL=.*$/m, '');
    const dependencies = {};
    for (const m of text.matchAll(/\brequire\((["'])(\.[^"']*)\1\)/g)) {
      const base = posix.join(posix.dirname(id), m[2]);
      const found = [base, `${base}.js`, `${base}/index.js`].find((c) => c.endsWith('.js') && existsSync(join(distMain, c)));
      if (!found) throw new Error(`${id}: cannot find ${m[2]}`);
      dependencies[m[2]] = found;
      queue.push(found);
    }
    const { code } = esbuild.transformSync(text, { minifyWhitespace: true, minifySyntax: true, charset: 'ascii', legalComments: 'none', loader: 'js' });
    modules.set(id, { code, dependencies });
  }
  return modules;
}

const defineText = (modules, id) =>
  `define(${JSON.stringify(id)},${JSON.stringify(modules.get(id).dependencies)},function(exports,require,module,__filename,__dirname){${modules.get(id).code}\n});\n`;

/**
 * Writes the pack: the modules `partOf` gives no part (and the entry) in diskwright.js, each part's modules in
 * diskwright-<part>.js.
 */
function writePack(modules, partOf, buildId) {
  const footer = `//# diskwright-build-id=${buildId}`;
  const where = {};
  const files = new Map([['', [WRAPPER_START, LOADER]]]);
  for (const id of modules.keys()) {
    const part = id === ENTRY ? '' : (partOf.get(id) ?? '');
    if (part !== '') where[id] = part;
    if (!files.has(part)) files.set(part, ['(function (define) {\n']);
    files.get(part).push(defineText(modules, id));
  }
  files.get('').splice(2, 0, `var BUILD_ID = ${JSON.stringify(buildId)};\nvar PART_OF = ${JSON.stringify(where)};\n`);
  files.get('').push(`module.exports = load(${JSON.stringify(ENTRY)});`, WRAPPER_END, `\n${footer}`);
  for (const [part, text] of files) if (part !== '') text.push(`})\n${footer}`);
  for (const [part, chunks] of files) {
    const file = part === '' ? bundle : join(outDir, `diskwright-${part}.js`);
    const text = chunks.join('');
    // bin/diskwright.js reads the pack as latin1, which is the text only where every byte is ASCII.
    if (!/^[\x00-\x7f]*$/.test(text)) throw new Error(`${file}: the pack holds characters outside ASCII`);
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, text);
    renameSync(tmp, file);
  }
}

/**
 * Which part each module goes to, from the modules each group of warm-up commands loaded (scripts/cli-code-cache.mjs
 * --list-modules, each group in a fresh node): the quick group's (info, --help) and what two or more other groups
 * share (a few small qcow2 modules map and check both use) in the first file, each group's own in a part of that
 * name, the rest (every command not warmed up) in "more".
 */
function assignParts(modules, loadedBy) {
  const partOf = new Map();
  const quick = new Set(loadedBy.get('quick'));
  for (const id of modules.keys()) {
    if (quick.has(id)) continue;
    const groups = [...loadedBy].filter(([name, ids]) => name !== 'quick' && ids.includes(id)).map(([name]) => name);
    if (groups.length === 1) partOf.set(id, groups[0]);
    else if (groups.length === 0) partOf.set(id, 'more');
  }
  return partOf;
}

export async function bundleCli() {
  // The old pack and caches go first: a failure below must not leave a pack older than dist/main in use.
  rmSync(outDir, { recursive: true, force: true });
  let esbuild;
  try {
    esbuild = createRequire(join(root, 'package.json'))('esbuild');
  } catch {
    console.warn('note: esbuild is not installed: the command line runs from dist/main (slower to start)');
    return false;
  }
  if (!existsSync(join(distMain, ENTRY))) throw new Error(`${join(distMain, ENTRY)} is missing: compile dist/main first`);
  mkdirSync(outDir, { recursive: true });
  const modules = collectModules(esbuild);
  const buildId = randomBytes(16).toString('hex');
  // Everything in the first file, to find what each group of warm-up commands loads: scripts/cli-code-cache.mjs
  // runs them and prints the modules they required. Then the pack is written again in parts, and the caches made.
  writePack(modules, new Map(), buildId);
  const env = { ...process.env, NODE_OPTIONS: '' };
  const loadedBy = new Map();
  for (const group of WARM_UP_GROUPS) {
    const listed = spawnSync(process.execPath, [cacheScript, '--list-modules', group], { cwd: root, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    if (listed.status !== 0) break;
    loadedBy.set(group, JSON.parse(listed.stdout));
  }
  if (loadedBy.size === WARM_UP_GROUPS.length) writePack(modules, assignParts(modules, loadedBy), buildId);
  else console.warn('note: the modules of the quick commands could not be listed: the command line is packed in one file');
  // The code caches are made by running commands in a fresh node: V8 only caches what it has compiled, and a
  // cache is only taken by a node with the same version and flags as the one that made it.
  const r = spawnSync(process.execPath, [cacheScript], { cwd: root, stdio: 'inherit', env });
  if (r.status !== 0) console.warn('note: the code cache of the CLI pack was not written: the command line starts a little slower');
  return true;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  bundleCli().catch((err) => {
    console.error(`bundling the command line failed: ${err.message}`);
    process.exit(1);
  });
}
