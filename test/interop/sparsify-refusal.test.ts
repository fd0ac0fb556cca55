/**
 * sparsify --in-place --dry-run warns exactly when sparsify --in-place refuses (issue 23). Each image holds an
 * ext4 (made by mke2fs -d) whose 8 MiB file debugfs deleted, so there is data to give back; the images and their
 * chains are made by the oracles (qemu-img create -b / convert -o subformat=…, uml_mkcow) except where no oracle
 * can make them (a differencing VHD: qemu has no VHD backing files; a Parallels image over a base: a bundle, its
 * images from qemu-img and its descriptor written here, as parallels-bundle.test.ts does).
 * For a refusing image: the dry run exits 0, its report carries inPlaceRefusal and its text the warning, in the
 * words the real run then exits 1 with; every file of the image is unchanged (sha256) by either. For an image
 * that compacts: no warning, the run gives back what the dry run said, and qemu-img check is clean.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { CLI, dw, dwOk, must, run, scratch } from '../helpers';
import { makeExt } from './inside-common';
import { MiB, randomFile } from './sparsify-common';

const s = scratch('dw-sparsify-refusal-');
after(() => s.cleanup());

let disk: string;
let zeros: string;

before(() => {
  const tree = s.path('tree');
  mkdirSync(tree, { recursive: true });
  randomFile(join(tree, 'keep.bin'), MiB, 80);
  randomFile(join(tree, 'big.bin'), 8 * MiB, 81);
  disk = s.path('ext4.raw');
  makeExt(disk, tree, '16M', ['-t', 'ext4', '-b', '4096']);
  must('debugfs', ['-w', '-R', 'rm /big.bin', disk]);
  zeros = s.path('zeros.raw');
  writeFileSync(zeros, Buffer.alloc(0));
  must('truncate', ['-s', '16M', zeros]);
});

/** Every file of the image (a bundle's folder: each file in it) and its sha256. */
function digests(path: string): Record<string, string> {
  const files = statSync(path).isDirectory() ? readdirSync(path).map((n) => join(path, n)) : [path];
  return Object.fromEntries(files.map((f) => [f, createHash('sha256').update(readFileSync(f)).digest('hex')]));
}

interface DryReport {
  reclaimBytes: number;
  inPlaceRefusal?: string;
  notes: string[];
}

/** A child of `parent` (format `pf`) made by qemu-img create -b, then holding the whole ext4 (qemu-img convert -n). */
function qemuChild(name: string, format: string, parentFormat: string, parent: string, opts: string[] = []): string {
  const child = s.path(name);
  must('qemu-img', ['create', '-q', '-f', format, ...opts, '-b', parent, '-F', parentFormat, child]);
  must('qemu-img', ['convert', '-n', '-f', 'raw', '-O', format, disk, child]);
  return child;
}

function converted(name: string, format: string, opts: string[] = []): string {
  const img = s.path(name);
  must('qemu-img', ['convert', '-f', 'raw', '-O', format, ...opts, disk, img]);
  return img;
}

/** A Parallels bundle: a Plain (raw) root of zeros under a Compressed (Parallels) top image holding the ext4. */
function parallelsBundle(): string {
  const dir = s.path('chain.hdd');
  mkdirSync(dir);
  must('cp', [zeros, join(dir, 'base.raw')]);
  must('qemu-img', ['convert', '-f', 'raw', '-O', 'parallels', disk, join(dir, 'top.hds')]);
  const sectors = statSync(disk).size / 512;
  const top = '{5fbaabe3-6958-40ff-92a7-860e329aab41}';
  const root = '{11111111-1111-2222-3333-444444444444}';
  const none = '{00000000-0000-0000-0000-000000000000}';
  const image = (guid: string, type: string, file: string) => `      <Image>\n        <GUID>${guid}</GUID>\n        <Type>${type}</Type>\n        <File>${file}</File>\n      </Image>`;
  const shot = (guid: string, parent: string) => `    <Shot>\n      <GUID>${guid}</GUID>\n      <ParentGUID>${parent}</ParentGUID>\n    </Shot>`;
  writeFileSync(
    join(dir, 'DiskDescriptor.xml'),
    `<?xml version='1.0' encoding='UTF-8'?>
<Parallels_disk_image Version="1.0">
  <Disk_Parameters>
    <Disk_size>${sectors}</Disk_size>
    <Cylinders>${sectors / 512}</Cylinders>
    <Heads>16</Heads>
    <Sectors>32</Sectors>
    <Padding>0</Padding>
  </Disk_Parameters>
  <StorageData>
    <Storage>
      <Start>0</Start>
      <End>${sectors}</End>
      <Blocksize>2048</Blocksize>
${image(root, 'Plain', 'base.raw')}
${image(top, 'Compressed', 'top.hds')}
    </Storage>
  </StorageData>
  <Snapshots>
${shot(root, none)}
${shot(top, root)}
  </Snapshots>
</Parallels_disk_image>
`,
  );
  return dir;
}

const refusing: Array<{ name: string; make: () => string; reason: RegExp }> = [
  {
    name: 'a differencing VHD (a freed block would read the parent)',
    make: () => {
      const parent = converted('vhd-parent.vhd', 'vpc');
      const child = s.path('vhd-child.vhd');
      dwOk(['create', '-f', 'vpc', '-b', parent, '-F', 'vpc', child]);
      dwOk(['convert', '-n', '-f', 'raw', '-O', 'vpc', disk, child]);
      return child;
    },
    reason: /a differencing VHD cannot release blocks/,
  },
  { name: 'a streamOptimized VMDK', make: () => converted('stream.vmdk', 'vmdk', ['-o', 'subformat=streamOptimized']), reason: /streamOptimized/ },
  {
    name: 'a VMDK over a parent without zeroed-grain entries',
    make: () => qemuChild('vmdk-child.vmdk', 'vmdk', 'vmdk', converted('vmdk-parent.vmdk', 'vmdk')),
    reason: /lies over a parent and its extent has no zeroed-grain entries/,
  },
  { name: 'a Parallels image over a backing image (a bundle)', make: parallelsBundle, reason: /lies over a backing image/ },
  {
    name: 'a version 2 qcow2 over a backing file',
    make: () => qemuChild('v2-child.qcow2', 'qcow2', 'raw', zeros, ['-o', 'compat=0.10']),
    reason: /version 2 \(compat=0\.10\) image with a backing file/,
  },
  { name: 'a fixed VHDX', make: () => converted('fixed.vhdx', 'vhdx', ['-o', 'subformat=fixed']), reason: /fixed VHDX image keeps every block/ },
  {
    // What opening for writing refuses, the read-only look says first: qemu-io aborted after a write with lazy
    // refcounts leaves the dirty bit set (a write into the file system's free space, so its files stay whole).
    name: 'a qcow2 not closed cleanly (the dirty bit, left by qemu-io aborting)',
    make: () => {
      const img = converted('dirty.qcow2', 'qcow2', ['-o', 'lazy_refcounts=on']);
      const r = run('qemu-io', ['-c', 'write -P 0 15M 64k', '-c', 'abort', img]);
      assert.notEqual(r.status, 0, 'qemu-io aborted');
      assert.equal(JSON.parse(must('qemu-img', ['info', '--output=json', img]).stdout)['dirty-flag'], true, 'qemu-img info: dirty');
      return img;
    },
    reason: /the image was not closed cleanly; repair it with check -r all first/,
  },
  {
    name: 'a VDI whose block map names one data block twice (a writable open refuses it)',
    make: () => {
      const img = converted('shared.vdi', 'vdi');
      const buf = readFileSync(img);
      const map = buf.readUInt32LE(0x154);
      const first = buf.readUInt32LE(map);
      assert.notEqual(first, 0xffffffff, 'guest block 0 holds data');
      buf.writeUInt32LE(first, map + 15 * 4);
      writeFileSync(img, buf);
      return img;
    },
    reason: /guest blocks 0 and 15 share one data block; repair it first/,
  },
  {
    name: 'a UML COW file (no discard at all)',
    make: () => {
      const base = s.path('cow-base.raw');
      must('cp', [disk, base]);
      const cow = s.path('disk.cow');
      must('uml_mkcow', ['-f', cow, base]);
      return cow;
    },
    reason: /cow images cannot release space in place/,
  },
];

for (const c of refusing) {
  test(`in place refused: ${c.name}: the dry run warns in the words of the refusal; nothing is written`, () => {
    const img = c.make();
    const before = digests(img);
    const dry = JSON.parse(dwOk(['sparsify', '--dry-run', '--in-place', img, '--output', 'json']).stdout) as DryReport;
    assert.match(dry.inPlaceRefusal ?? '', c.reason, JSON.stringify(dry));
    const warning = dry.notes.find((n) => n.startsWith('Warning: --in-place will refuse: '));
    assert.ok(warning, `the warning is a note: ${dry.notes.join(' | ')}`);
    const text = dwOk(['sparsify', '--dry-run', '--in-place', img]).stdout;
    assert.ok(text.includes(warning), `the text report warns too:\n${text}`);
    // The preview without --in-place (the app's) knows it as well, but does not warn: nothing in place was asked.
    const preview = JSON.parse(dwOk(['sparsify', '--dry-run', img, '--output', 'json']).stdout) as DryReport;
    assert.equal(preview.inPlaceRefusal, dry.inPlaceRefusal);
    assert.ok(!preview.notes.some((n) => n.startsWith('Warning:')));

    const r = dw(['sparsify', '--in-place', img]);
    assert.equal(r.status, 1, `the real run refuses: ${r.stdout}${r.stderr}`);
    assert.equal(r.stderr.trim(), `diskwright: ${warning.slice('Warning: --in-place will refuse: '.length)}`, 'the refusal is the warning, word for word');
    assert.match(r.stderr, c.reason);
    assert.deepEqual(digests(img), before, 'nothing written by the dry run or the refusal');
    assertDiscardSays(dw, img, dry.inPlaceRefusal!);
  });
}

/**
 * The device's discard itself (diskwright discard: a writable open, then BlockDevice.discard over the whole disk)
 * refuses in the words the dry run took from its discardRefusal, so the two cannot drift. A format without
 * discard says so in the discard command's own words.
 */
function assertDiscardSays(cli: (args: string[]) => { status: number | null; stderr: string; stdout: string }, img: string, reason: string): void {
  const r = cli(['discard', img, '0', String(statSync(disk).size)]);
  assert.equal(r.status, 1, `discard refuses: ${r.stdout}${r.stderr}`);
  if (reason.endsWith('images cannot release space in place')) assert.match(r.stderr, /images cannot discard in this build/);
  else assert.ok(r.stderr.trim().endsWith(`: ${reason}`), `discard's refusal is discardRefusal's: ${r.stderr} / ${reason}`);
}

const compacting: Array<{ name: string; format: string; make: () => string }> = [
  { name: 'a dynamic VHD', format: 'vpc', make: () => converted('dynamic.vhd', 'vpc') },
  { name: 'a monolithicSparse VMDK', format: 'vmdk', make: () => converted('sparse.vmdk', 'vmdk') },
  { name: 'a VMDK over a parent with zeroed-grain entries', format: 'vmdk', make: () => qemuChild('zg-child.vmdk', 'vmdk', 'vmdk', converted('zg-parent.vmdk', 'vmdk'), ['-o', 'zeroed_grain=on']) },
  { name: 'a Parallels image', format: 'parallels', make: () => converted('plain.prl', 'parallels') },
  { name: 'a version 3 qcow2 over a backing file', format: 'qcow2', make: () => qemuChild('v3-child.qcow2', 'qcow2', 'raw', zeros) },
];

for (const c of compacting) {
  test(`in place runs: ${c.name}: no warning, and it gives back what the dry run said; qemu-img check clean`, () => {
    const img = c.make();
    const dry = JSON.parse(dwOk(['sparsify', '--dry-run', '--in-place', img, '--output', 'json']).stdout) as DryReport;
    assert.equal(dry.inPlaceRefusal, undefined, JSON.stringify(dry));
    assert.ok(!dry.notes.some((n) => n.startsWith('Warning:')), dry.notes.join(' | '));
    assert.ok(dry.reclaimBytes >= 7 * MiB, `the deleted file's data (${dry.reclaimBytes})`);
    const r = JSON.parse(dwOk(['sparsify', '--in-place', img, '--output', 'json']).stdout) as DryReport;
    assert.equal(r.reclaimBytes, dry.reclaimBytes);
    // qemu has no check for VHD: there, qemu-img reading every block into raw, and e2fsck, are the oracles.
    if (c.format !== 'vpc') assert.equal(run('qemu-img', ['check', '-f', c.format, img]).status, 0, 'qemu-img check');
    const back = s.path(`${c.format}-back-${compacting.indexOf(c)}.raw`);
    must('qemu-img', ['convert', '-f', c.format, '-O', 'raw', img, back]);
    must('truncate', ['-s', String(statSync(disk).size), back]);
    const fsck = run('e2fsck', ['-fn', back]);
    assert.equal(fsck.status, 0, `e2fsck -fn: ${fsck.stdout}${fsck.stderr}`);
  });
}

test('the app\'s "in place, keeping a copy" refuses an image of several files before copying, as copySwapRefusal says (its preview can ask the same)', async () => {
  const { compactViaCopy, copySwapRefusal } = await import('../../src-main/services/sparsify/swap');
  const split = s.path('split.vmdk');
  must('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', disk, split]);
  const one = converted('one.vmdk', 'vmdk');
  assert.equal(await copySwapRefusal(one), undefined);
  const reason = await copySwapRefusal(split);
  assert.match(reason ?? '', /can span several files/);
  const files = readdirSync(s.dir).filter((n) => n.startsWith('split'));
  assert.ok(files.length >= 2, `qemu-img wrote a descriptor and its extents: ${files.join(', ')}`);
  const before = Object.fromEntries(files.map((n) => [n, digests(join(s.dir, n))]));
  await assert.rejects(compactViaCopy({ path: split, keepCopy: true }), (e: Error) => e.message === `${split}: ${reason}; compact it into a new image instead`);
  assert.deepEqual(readdirSync(s.dir).filter((n) => n.startsWith('split')).sort(), files.sort(), 'no copy left beside it');
  assert.deepEqual(Object.fromEntries(files.map((n) => [n, digests(join(s.dir, n))])), before);
});

test("the app's Compact preview (the sparsify job) says in place will be refused for an image of several files, and not for one file", async () => {
  const { JobManager } = await import('../../src-main/services/jobs');
  const { jobEnd } = await import('../job-end');
  const jobs = new JobManager('anywhere');
  const preview = async (path: string) => {
    const end = await jobEnd((l) => jobs.onEvent(l), () => jobs.start({ kind: 'sparsify', path, mode: 'preview' }));
    assert.equal(end.type, 'done', JSON.stringify(end));
    return (end as { result: { inPlaceRefusal?: string } }).result;
  };
  const split = s.path('split-preview.vmdk');
  must('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', disk, split]);
  assert.match((await preview(split)).inPlaceRefusal ?? '', /can span several files/);
  assert.equal((await preview(converted('one-preview.vmdk', 'vmdk'))).inPlaceRefusal, undefined);
});

/** diskwright without the native helper (DISKWRIGHT_NO_NATIVE=1): a system that cannot punch holes. */
function dwNoPunch(args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, DISKWRIGHT_NO_NATIVE: '1' }, encoding: 'utf8' });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const needPunching: Array<{ name: string; make: () => string; reason: RegExp }> = [
  { name: 'a fixed VHD', make: () => converted('np-fixed.vhd', 'vpc', ['-o', 'subformat=fixed']), reason: /fixed VHD keeps its whole data area, and this system cannot punch holes/ },
  { name: 'a static VDI', make: () => converted('np-static.vdi', 'vdi', ['-o', 'static=on']), reason: /static VDI keeps every block in place, and this system cannot punch holes/ },
  { name: 'a monolithicFlat VMDK', make: () => converted('np-flat.vmdk', 'vmdk', ['-o', 'subformat=monolithicFlat']), reason: /cannot punch holes in the flat extent/ },
];

for (const c of needPunching) {
  test(`on a system that cannot punch holes, ${c.name}: the dry run warns and the run refuses in the same words; nothing written`, () => {
    const img = c.make();
    const before = digests(img);
    const flat = img.endsWith('.vmdk') ? digests(img.replace(/\.vmdk$/, '-flat.vmdk')) : {};
    const d = dwNoPunch(['sparsify', '--dry-run', '--in-place', img, '--output', 'json']);
    assert.equal(d.status, 0, d.stderr);
    const dry = JSON.parse(d.stdout) as DryReport;
    assert.match(dry.inPlaceRefusal ?? '', c.reason, JSON.stringify(dry));
    const warning = dry.notes.find((n) => n.startsWith('Warning: --in-place will refuse: '))!;
    const r = dwNoPunch(['sparsify', '--in-place', img]);
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.equal(r.stderr.trim(), `diskwright: ${warning.slice('Warning: --in-place will refuse: '.length)}`);
    // With the helper (hole punching), the same image compacts: no warning.
    assert.equal((JSON.parse(dwOk(['sparsify', '--dry-run', '--in-place', img, '--output', 'json']).stdout) as DryReport).inPlaceRefusal, undefined);
    assert.deepEqual(digests(img), before);
    if (img.endsWith('.vmdk')) assert.deepEqual(digests(img.replace(/\.vmdk$/, '-flat.vmdk')), flat);
    assertDiscardSays(dwNoPunch, img, dry.inPlaceRefusal!);
  });
}

test('on a system that cannot punch holes, a raw image is not refused: the dry run and the run say its free ranges are zeroed instead', () => {
  const img = s.path('np.raw');
  must('cp', [disk, img]);
  const dry = JSON.parse(dwNoPunch(['sparsify', '--dry-run', '--in-place', '-f', 'raw', img, '--output', 'json']).stdout) as DryReport;
  assert.equal(dry.inPlaceRefusal, undefined);
  const zeroed = dry.notes.find((n) => /cannot punch holes in the file: the free ranges are zeroed instead/.test(n));
  assert.ok(zeroed, dry.notes.join(' | '));
  const r = dwNoPunch(['sparsify', '--in-place', '-f', 'raw', img, '--output', 'json']);
  assert.equal(r.status, 0, r.stderr);
  const ran = JSON.parse(r.stdout) as DryReport;
  assert.ok(ran.notes.includes(zeroed), `the run's note is the dry run's: ${ran.notes.join(' | ')}`);
  assert.equal(ran.reclaimBytes, dry.reclaimBytes);
  const fsck = run('e2fsck', ['-fn', img]);
  assert.equal(fsck.status, 0, fsck.stdout + fsck.stderr);
});
