// Writes V8's code cache for the CLI bundle (dist/cli/diskwright.js.cache); run by scripts/bundle-cli.mjs in a
// fresh node. It loads the bundle exactly as bin/diskwright.js does, runs the quick commands people type most
// (info, map, check, --help) on small images made in a temporary folder, then asks V8 for the compiled code:
// a cache made after running holds the functions those commands compiled, not only the top level, so they start
// without parsing. Other commands still use the cache for what they share and compile the rest as usual.
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

const COMMANDS = ({ q, r }) => [
  ['--help'],
  ...[q, r].flatMap((img) => [
    ['info', img],
    ['info', '--output', 'json', img],
    ['map', img],
    ['map', '--output', 'json', img],
  ]),
  ['check', q],
  ['check', '--output', 'json', q],
];

async function main() {
  const { cli, script, id } = loadBundle(BUNDLE, false);
  if (id === undefined) throw new Error(`${BUNDLE} has no build id`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'diskwright-cache-'));
  const failed = [];
  try {
    const images = makeImages(dir);
    const io = { out() {}, err() {}, writeOut: async () => {}, readIn: async () => Buffer.alloc(0) };
    for (const argv of COMMANDS(images)) {
      const code = await cli.runCli(argv, io);
      if (code !== 0) failed.push(`${argv[0]} exited ${code}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  if (failed.length) throw new Error(`warm-up commands failed: ${failed.join(', ')}`);
  const out = `${BUNDLE}.cache`;
  const tmp = `${out}.${process.pid}.tmp`;
  // The bundle's build id first: bin/diskwright.js takes the cache only for the bundle it was made from.
  fs.writeFileSync(tmp, Buffer.concat([Buffer.from(`${id}\n`, 'latin1'), script.createCachedData()]));
  fs.renameSync(tmp, out);
}

try {
  await main();
} catch (err) {
  console.error(`the CLI's code cache was not written: ${err.message}`);
  process.exit(1);
}
