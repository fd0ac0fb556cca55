// Writes V8's code cache for each file of the CLI pack (dist/cli/diskwright*.js.cache); run by
// scripts/bundle-cli.mjs in a fresh node. It loads the pack exactly as bin/diskwright.js does, runs the quick
// commands people type most (info, map, check, --help) on small images made in a temporary folder, then asks V8
// for the compiled code: a cache made after running holds the functions those commands compiled, not only the
// top level, so they start without parsing. Other commands still use the cache for what they share and compile
// the rest as usual. The "more" part's cache is taken with nothing of it run (its top level and where each
// function lies, so that it is not parsed whole when a command first needs it): a larger one cost more to read
// at every convert than compiling the few functions a run uses (docs/performance.md, second round).
// With --list-modules GROUP it runs that group of commands only, writes nothing and prints the modules they
// loaded (JSON): bundle-cli.mjs packs the file parts from that.
// The images are made by another process (bin/diskwright.js create and write): the code of create and write
// would otherwise be in the cache too, and every start deserialises all of it (448 -> 362 KB; info, check and
// map 70 fewer page faults each).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// bin/diskwright.js is CommonJS; required (not run) it hands over its loader.
const { loadBundle, BUNDLE } = createRequire(import.meta.url)('../bin/diskwright.js');

/** The images the commands look at, made by a separate diskwright process (see above). */
function makeImages(dir) {
  const q = path.join(dir, 'a.qcow2');
  const r = path.join(dir, 'a.raw');
  const data = path.join(dir, 'data');
  fs.writeFileSync(data, Buffer.alloc(100000, 7));
  const bin = fileURLToPath(new URL('../bin/diskwright.js', import.meta.url));
  for (const argv of [['create', '-q', '-f', 'qcow2', q, '4M'], ['write', q, '65536', data], ['create', '-q', '-f', 'raw', r, '1M']]) {
    const run = spawnSync(process.execPath, [bin, ...argv], { encoding: 'utf8' });
    if (run.status !== 0) throw new Error(`${argv[0]} exited ${run.status}: ${run.stderr}`);
  }
  return { q, r };
}

/** The warm-up commands in groups: scripts/bundle-cli.mjs packs each group's own modules in a part of that name. */
const GROUPS = ({ q, r }) => ({
  quick: [['--help'], ...[q, r].flatMap((img) => [['info', img], ['info', '--output', 'json', img]])],
  map: [q, r].flatMap((img) => [['map', img], ['map', '--output', 'json', img]]),
  check: [['check', q], ['check', '--output', 'json', q]],
});

async function main() {
  const { cli, script, id, pack } = loadBundle(BUNDLE, false);
  if (id === undefined) throw new Error(`${BUNDLE} has no build id`);
  const listing = process.argv.indexOf('--list-modules');
  const only = listing > 0 ? process.argv[listing + 1] : undefined;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'diskwright-cache-'));
  const failed = [];
  try {
    const groups = GROUPS(makeImages(dir));
    if (only !== undefined && !(only in groups)) throw new Error(`no group of warm-up commands named ${only}`);
    const io = { out() {}, err() {}, writeOut: async () => {}, readIn: async () => Buffer.alloc(0) };
    for (const [name, commands] of Object.entries(groups)) {
      if (only !== undefined && name !== only) continue;
      for (const argv of commands) {
        const code = await cli.runCli(argv, io);
        if (code !== 0) failed.push(`${argv[0]} exited ${code}`);
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  if (failed.length) throw new Error(`warm-up commands failed: ${failed.join(', ')}`);
  if (only !== undefined) {
    if (pack === undefined) throw new Error(`${BUNDLE} is not a pack with a loader`);
    process.stdout.write(JSON.stringify(pack.loadedModules()));
    return;
  }
  // Each file's cache starts with the pack's build id: the loader takes a cache only for the build it was made from.
  const write = (file, s) => {
    const tmp = `${file}.cache.${process.pid}.tmp`;
    fs.writeFileSync(tmp, Buffer.concat([Buffer.from(`${id}\n`, 'latin1'), s.createCachedData()]));
    fs.renameSync(tmp, `${file}.cache`);
  };
  write(BUNDLE, script);
  // The parts the warm-up loaded hold what it compiled; the others (more) are loaded now, nothing of them run.
  if (pack !== undefined) for (const name of pack.partNames()) write(path.join(path.dirname(BUNDLE), `diskwright-${name}.js`), pack.loadPart(name).script);
}

try {
  await main();
} catch (err) {
  console.error(`the CLI's code cache was not written: ${err.message}`);
  process.exit(1);
}
