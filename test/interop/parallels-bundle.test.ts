/**
 * Parallels bundles (.hdd folders with DiskDescriptor.xml, qemu's docs/interop/prl-xml.txt), made from
 * qemu-img images plus a descriptor written here. The truth for a chain is qemu-img reading the same images
 * as a json: chain (top over its backing); writes go to the top image only, as qemu-io's into the same chain.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readFileSync, renameSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dw, dwOk, must, run, scratch } from '../helpers';
import { create, io, ourCheck, patch32, qemuCheck } from './parallels-common';
import { parallelsDriver } from '../../src-main/formats/parallels/driver';

const s = scratch('dw-prl-bundle-');
after(() => s.cleanup());

const TOP = '{5fbaabe3-6958-40ff-92a7-860e329aab41}';
const ZERO = '{00000000-0000-0000-0000-000000000000}';
const guid = (n: number) => `{${String(n).repeat(8)}-1111-2222-3333-444444444444}`;

interface Img {
  guid: string;
  type: 'Plain' | 'Compressed';
  file: string;
  parent: string;
}

function descriptor(sizeSectors: number, blocksize: number, images: Img[], topGuid?: string, storages = 1): string {
  const imgs = images.map((i) => `      <Image>\n        <GUID>${i.guid}</GUID>\n        <Type>${i.type}</Type>\n        <File>${i.file}</File>\n      </Image>`).join('\n');
  const storage = `    <Storage>\n      <Start>0</Start>\n      <End>${sizeSectors}</End>\n      <Blocksize>${blocksize}</Blocksize>\n${imgs}\n    </Storage>`;
  const shots = images.map((i) => `    <Shot>\n      <GUID>${i.guid}</GUID>\n      <ParentGUID>${i.parent}</ParentGUID>\n    </Shot>`).join('\n');
  return `<?xml version='1.0' encoding='UTF-8'?>
<Parallels_disk_image Version="1.0">
  <Disk_Parameters>
    <Disk_size>${sizeSectors}</Disk_size>
    <Cylinders>${sizeSectors / 512}</Cylinders>
    <Heads>16</Heads>
    <Sectors>32</Sectors>
    <Padding>0</Padding>
  </Disk_Parameters>
  <StorageData>
${Array(storages).fill(storage).join('\n')}
  </StorageData>
  <Snapshots>
${topGuid ? `    <TopGUID>${topGuid}</TopGUID>\n` : ''}${shots}
  </Snapshots>
</Parallels_disk_image>
`;
}

/** qemu's json: filename for a chain given top first; the last image may be raw. */
function jsonChain(dir: string, chain: Array<{ file: string; raw?: boolean }>): string {
  const node = (i: number): Record<string, unknown> => ({
    driver: chain[i].raw ? 'raw' : 'parallels',
    file: { driver: 'file', filename: join(dir, chain[i].file) },
    ...(i + 1 < chain.length ? { backing: node(i + 1) } : {}),
  });
  return `json:${JSON.stringify(node(0))}`;
}

/** base (0x11 + 0x12), mid (0x21), top (0x31): 4 MiB, 64 KiB clusters. */
function threeLevels(name: string): string {
  const dir = s.path(name);
  mkdirSync(dir);
  create(join(dir, 'base.hds'), '4M', '64k');
  io(join(dir, 'base.hds'), ['write -P 0x11 0 1M', 'write -P 0x12 3M 64k']);
  create(join(dir, 'mid.hds'), '4M', '64k');
  io(join(dir, 'mid.hds'), ['write -P 0x21 512k 100k']);
  create(join(dir, 'top.hds'), '4M', '64k');
  io(join(dir, 'top.hds'), ['write -P 0x31 600k 10k', 'write -P 0x32 3M 1k']);
  writeFileSync(join(dir, 'DiskDescriptor.xml'), descriptor(8192, 128, [
    { guid: guid(1), type: 'Compressed', file: 'base.hds', parent: ZERO },
    { guid: guid(2), type: 'Compressed', file: 'mid.hds', parent: guid(1) },
    { guid: TOP, type: 'Compressed', file: 'top.hds', parent: guid(2) },
  ]));
  return dir;
}

function sameAsQemu(bundle: string, json: string): void {
  const ours = `${bundle}.ours.raw`;
  const theirs = `${bundle}.qemu.raw`;
  dwOk(['convert', '-O', 'raw', bundle, ours]);
  must('qemu-img', ['convert', '-O', 'raw', json, theirs]);
  assert.ok(readFileSync(ours).equals(readFileSync(theirs)), 'convert -O raw reads the chain as qemu-img');
  const m = JSON.parse(dwOk(['map', '--output', 'json', bundle]).stdout);
  assert.deepEqual(m, JSON.parse(must('qemu-img', ['map', '--output', 'json', json]).stdout), 'map');
}

test('parallels bundle: three Compressed images under the predefined top GUID read as qemu-img reads the json: chain; info shows the tree', () => {
  const dir = threeLevels('three.hdd');
  sameAsQemu(dir, jsonChain(dir, [{ file: 'top.hds' }, { file: 'mid.hds' }, { file: 'base.hds' }]));
  const info = JSON.parse(dwOk(['info', '--output', 'json', dir]).stdout);
  assert.equal(info.format, 'parallels');
  assert.equal(info['virtual-size'], 4 << 20);
  const data = info['format-specific'].data;
  assert.deepEqual(data.chain.map((c: { file: string }) => c.file), ['top.hds', 'mid.hds', 'base.hds']);
  assert.equal(data.snapshots.length, 3);
  // The descriptor itself is recognised too.
  assert.equal(JSON.parse(dwOk(['info', '--output', 'json', join(dir, 'DiskDescriptor.xml')]).stdout)['virtual-size'], 4 << 20);
});

test('parallels bundle: a Plain (raw) root and a TopGUID naming one branch of the snapshot tree', () => {
  const dir = s.path('plain.hdd');
  mkdirSync(dir);
  must('qemu-img', ['create', '-q', '-f', 'raw', join(dir, 'root.raw'), '2M']);
  must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x41 0 2M', join(dir, 'root.raw')]);
  create(join(dir, 'a.hds'), '2M', '4k');
  io(join(dir, 'a.hds'), ['write -P 0x51 5000 3000']);
  create(join(dir, 'b.hds'), '2M', '4k');
  io(join(dir, 'b.hds'), ['write -P 0x61 1M 4k']);
  writeFileSync(join(dir, 'DiskDescriptor.xml'), descriptor(4096, 8, [
    { guid: guid(1), type: 'Plain', file: 'root.raw', parent: ZERO },
    { guid: guid(2), type: 'Compressed', file: 'a.hds', parent: guid(1) },
    { guid: guid(3), type: 'Compressed', file: 'b.hds', parent: guid(1) },
  ], guid(3)));
  sameAsQemu(dir, jsonChain(dir, [{ file: 'b.hds' }, { file: 'root.raw', raw: true }]));
});

test('parallels bundle: writes go to the top image only, to the bytes qemu-io writes into the same chain', () => {
  const ours = threeLevels('w-ours.hdd');
  const theirs = s.path('w-qemu.hdd');
  cpSync(ours, theirs, { recursive: true });
  const base = readFileSync(join(ours, 'base.hds'));
  const mid = readFileSync(join(ours, 'mid.hds'));
  const data = Buffer.alloc(70000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
  const f = s.path('data.bin');
  writeFileSync(f, data);
  dwOk(['write', ours, '1000000', f]);
  dwOk(['write', ours, '100', f]);
  const json = jsonChain(theirs, [{ file: 'top.hds' }, { file: 'mid.hds' }, { file: 'base.hds' }]);
  must('qemu-io', ['-c', `write -s ${f} 1000000 70000`, '-c', `write -s ${f} 100 70000`, json]);
  assert.ok(readFileSync(join(ours, 'top.hds')).equals(readFileSync(join(theirs, 'top.hds'))), 'top image byte for byte');
  assert.ok(readFileSync(join(ours, 'base.hds')).equals(base), 'base untouched');
  assert.ok(readFileSync(join(ours, 'mid.hds')).equals(mid), 'mid untouched');
  assert.equal(must('qemu-img', ['check', '-f', 'parallels', join(ours, 'top.hds')]).status, 0);
  sameAsQemu(ours, jsonChain(ours, [{ file: 'top.hds' }, { file: 'mid.hds' }, { file: 'base.hds' }]));
});

test('parallels bundle: a malformed descriptor is one plain line (bad XML, loop, missing or outside image, split storage, Plain overlay)', () => {
  const cases: Array<[string, (dir: string) => string, RegExp]> = [
    ['bad XML', () => '<?xml version="1.0"?>\n<Parallels_disk_image Version="1.0"><Disk_Parameters></Parallels_disk_image>', /bad XML/],
    ['loop', () => descriptor(8192, 128, [
      { guid: guid(1), type: 'Compressed', file: 'base.hds', parent: TOP },
      { guid: TOP, type: 'Compressed', file: 'top.hds', parent: guid(1) },
    ]), /loop/],
    ['missing image', () => descriptor(8192, 128, [{ guid: TOP, type: 'Compressed', file: 'nothere.hds', parent: ZERO }]), /nothere\.hds of the bundle is missing/],
    ['outside the folder', () => descriptor(8192, 128, [{ guid: TOP, type: 'Compressed', file: '../elsewhere.hds', parent: ZERO }]), /outside the bundle folder/],
    ['split storage', () => descriptor(8192, 128, [{ guid: TOP, type: 'Compressed', file: 'top.hds', parent: ZERO }], undefined, 2), /split storages/],
    ['Plain overlay', () => descriptor(8192, 128, [
      { guid: guid(1), type: 'Compressed', file: 'base.hds', parent: ZERO },
      { guid: TOP, type: 'Plain', file: 'top.hds', parent: guid(1) },
    ]), /overlays must be Compressed/],
    ['no such top', () => descriptor(8192, 128, [{ guid: guid(1), type: 'Compressed', file: 'base.hds', parent: ZERO }]), /names no Image/],
  ];
  cases.forEach(([name, xml, msg], i) => {
    const dir = s.path(`bad${i}.hdd`);
    mkdirSync(dir);
    create(join(dir, 'base.hds'), '4M', '64k');
    create(join(dir, 'top.hds'), '4M', '64k');
    writeFileSync(join(dir, 'DiskDescriptor.xml'), xml(dir));
    for (const cmd of [['info', dir], ['convert', '-O', 'raw', dir, s.path(`bad${i}.raw`)]]) {
      const r = dw(cmd);
      assert.equal(r.status, 1, `${name}: ${cmd[0]} exit code`);
      assert.equal(r.stderr.trim().split('\n').length, 1, `${name}: ${r.stderr}`);
      assert.match(r.stderr, msg, name);
    }
  });
});

test('parallels bundle: create on a name ending in .hdd makes a bundle (descriptor + one image qemu-img reads); writes land in its image', async () => {
  const dir = s.path('made.hdd');
  await parallelsDriver.create!(dir, 3 << 20, { options: { cluster_size: 65536 } });
  const image = join(dir, `made.hdd.0.${TOP}.hds`);
  const q = s.path('made.qemu.hds');
  create(q, '3M', '64k');
  assert.ok(readFileSync(image).equals(readFileSync(q)), 'the image is qemu-img create\'s');
  const info = JSON.parse(dwOk(['info', '--output', 'json', dir]).stdout);
  assert.equal(info['virtual-size'], 3 << 20);
  assert.equal(info['cluster-size'], 65536);
  const f = s.path('made.in');
  writeFileSync(f, Buffer.alloc(5000, 0x77));
  dwOk(['write', dir, '70000', f]);
  const raw = s.path('made.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', raw, '3M']);
  must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x77 70000 5000', raw]);
  assert.equal(must('qemu-img', ['check', '-f', 'parallels', image]).status, 0);
  assert.equal(must('qemu-img', ['compare', '-f', 'parallels', '-F', 'raw', image, raw]).status, 0);
});

test('parallels bundle: created under a temporary name with targetPath (as services/create.ts would), renamed into place, it opens', async () => {
  const tmp = s.path('.later.hdd.diskwright-0000.tmp');
  const dir = s.path('later.hdd');
  const opts = { options: { cluster_size: 4096 }, targetPath: dir };
  await parallelsDriver.create!(tmp, 1 << 20, opts);
  renameSync(tmp, dir);
  const info = JSON.parse(dwOk(['info', '--output', 'json', dir]).stdout);
  assert.deepEqual(info['format-specific'].data.chain.map((c: { file: string }) => c.file), [`later.hdd.0.${TOP}.hds`]);
  assert.equal(must('qemu-img', ['check', '-f', 'parallels', join(dir, `later.hdd.0.${TOP}.hds`)]).status, 0);
});

test('parallels bundle: check goes through every image of the chain (counts add up to qemu-img check\'s on each); -r all leaves each clean', () => {
  const dir = threeLevels('chk.hdd');
  truncateSync(join(dir, 'top.hds'), statSync(join(dir, 'top.hds')).size + 100000); // leak in the top image
  patch32(join(dir, 'base.hds'), 44, 0x746f6e59); // base left in use
  const before = s.path('chk.before.raw');
  const json = jsonChain(dir, [{ file: 'top.hds' }, { file: 'mid.hds' }, { file: 'base.hds' }]);
  must('qemu-img', ['convert', '-O', 'raw', json, before]);
  const per = ['top.hds', 'mid.hds', 'base.hds'].map((f) => qemuCheck(join(dir, f)).json);
  const sum = (k: string) => per.reduce((a, j) => a + Number(j[k] ?? 0), 0);
  const o = ourCheck(dir);
  assert.equal(o.status, 2);
  assert.equal(o.json.corruptions, sum('corruptions'));
  assert.equal(o.json.leaks, sum('leaks'));
  assert.match(o.stderr, /^base\.hds: ERROR image was not closed correctly$/m);
  assert.match(o.stderr, /^top\.hds: ERROR space leaked at the end of the image 100352$/m);
  assert.equal(ourCheck(dir, '-r', 'all').status, 0);
  for (const f of ['top.hds', 'mid.hds', 'base.hds']) assert.equal(qemuCheck(join(dir, f)).status, 0, f);
  const after = s.path('chk.after.raw');
  must('qemu-img', ['convert', '-O', 'raw', json, after]);
  assert.ok(readFileSync(after).equals(readFileSync(before)), 'guest bytes unchanged');
});

test('parallels bundle: a Plain (raw) top image is as long as the descriptor says, not as its file (issue 26 item 6)', () => {
  for (const [name, fileBytes] of [['plain-long.hdd', 6 << 20], ['plain-short.hdd', 3 << 20]] as const) {
    const dir = s.path(name);
    mkdirSync(dir);
    const raw = join(dir, 'disk.raw');
    must('qemu-img', ['create', '-q', '-f', 'raw', raw, String(fileBytes)]);
    must('qemu-io', ['-f', 'raw', '-c', `write -P 0x5a 0 ${fileBytes}`, raw]);
    writeFileSync(join(dir, 'DiskDescriptor.xml'), descriptor(8192, 128, [{ guid: TOP, type: 'Plain', file: 'disk.raw', parent: ZERO }]));
    const info = JSON.parse(dwOk(['info', '--output', 'json', dir]).stdout);
    assert.equal(info['virtual-size'], 4 << 20, `${name}: the descriptor's 4 MiB, not the file's ${fileBytes} bytes`);
    assert.match(info['format-specific'].data['size-note'], new RegExp(`the Plain image disk.raw is ${fileBytes} bytes long; the descriptor's size is used`));
    const check = dw(['check', '--output', 'json', dir]);
    assert.equal(check.status, 0, 'said, not counted: a raw file has no header to be wrong');
    assert.match(check.stderr, /Warning: .*the Plain image disk.raw is/);
    const out = `${dir}.raw`;
    dwOk(['convert', '-O', 'raw', dir, out]);
    const got = readFileSync(out);
    assert.equal(got.length, 4 << 20);
    const want = Buffer.alloc(4 << 20);
    want.fill(0x5a, 0, Math.min(fileBytes, 4 << 20));
    assert.ok(got.equals(want), `${name}: the file's bytes, then zeros past its end`);
    if (fileBytes > 4 << 20) {
      // qemu's raw driver takes a size too: the same 4 MiB window of the file.
      const json = `json:${JSON.stringify({ driver: 'raw', size: 4 << 20, file: { driver: 'file', filename: raw } })}`;
      assert.equal(run('qemu-img', ['compare', '-f', 'raw', out, json]).status, 0, 'qemu-img reads the same window');
    }
    assert.equal(statSync(raw).size, fileBytes, 'reading left the file as it was');
  }
});
