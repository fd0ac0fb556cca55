/**
 * VMDK chains against qemu: a stale chain (the parent written after the child was made) is refused with
 * EBACKINGCHANGED and read when accepted, reading what qemu reads once the child's parentCID is brought up to
 * date; info says the chain is stale beside qemu-img's own keys; the rebase and commit hooks (setBackingFile,
 * makeEmpty) leave images qemu-img reads, checks and compares as expected; extents outside the image's folder
 * follow a grant for exactly that pair, and check follows the policy it is given.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, dwOk, must, run, scratch } from '../helpers';
import { assertQemuAccepts, io, qemuCreate } from './vmdk-common';
import { openImage } from '../../src-main/registry';
import { DiskError } from '../../src-main/block/errors';
import type { BackingGrantPolicy } from '../../src-main/block/types';
import { vmdkDriver } from '../../src-main/formats/vmdk/driver';

const s = scratch('dw-vmdk-chain-');
after(() => s.cleanup());

const qinfo = (p: string) => JSON.parse(must('qemu-img', ['info', '--output', 'json', p]).stdout);
const descriptorOf = (p: string): string => {
  const b = readFileSync(p);
  return (b.subarray(0, 4).toString('latin1') === 'KDMV' ? b.subarray(512, 512 * 21) : b).toString('latin1').replace(/\0+$/, '');
};
const cidOf = (p: string): string => /^CID=(\w+)/m.exec(descriptorOf(p))![1];

/** A copy of a monolithicSparse child whose parentCID is set to `cid` in place (what qemu then reads). */
function withParentCid(child: string, copy: string, cid: string): void {
  const b = readFileSync(child);
  const text = b.subarray(512, 512 * 21).toString('latin1').replace(/^parentCID=\w+/m, `parentCID=${cid}`);
  b.write(text.padEnd(20 * 512, '\0').slice(0, 20 * 512), 512, 'latin1');
  writeFileSync(copy, b);
}

async function readAll(path: string, opts: Parameters<typeof openImage>[1]): Promise<Uint8Array> {
  const dev = await openImage(path, opts);
  try {
    const out = new Uint8Array(dev.size);
    await dev.read(0, out);
    return out;
  } finally {
    await dev.close();
  }
}

test('a stale chain: EBACKINGCHANGED, read when accepted as qemu reads it once the parentCID is current; info says so', async () => {
  const base = s.path('st-base.vmdk');
  const child = s.path('st-child.vmdk');
  qemuCreate(base, '', '2M');
  io(base, ['write -P 0x11 0 1M']);
  qemuCreate(child, '', '2M', 'st-base.vmdk');
  io(child, ['write -P 0x22 64k 64k']);
  io(base, ['write -P 0x33 512k 512k']); // the parent changes: a new CID, the child's parentCID is stale
  assert.notEqual(qinfo(child)['format-specific'].data['parent-cid'], qinfo(base)['format-specific'].data.cid);
  assert.notEqual(run('qemu-io', ['-c', 'read 0 4k', child]).status, 0, 'qemu itself refuses the stale chain');
  await assert.rejects(openImage(child, { backingPolicy: 'anywhere' }), (e: unknown) => e instanceof DiskError && e.code === 'EBACKINGCHANGED' && /stale/.test(e.message));
  const ours = await readAll(child, { backingPolicy: 'anywhere', acceptChangedBacking: true });
  const fixed = s.path('st-fixed.vmdk');
  withParentCid(child, fixed, cidOf(base));
  const theirs = s.path('st-theirs.raw');
  must('qemu-img', ['convert', '-O', 'raw', fixed, theirs]);
  assert.ok(Buffer.from(ours).equals(readFileSync(theirs)), 'accepted stale chain reads as qemu reads the chain');
  // The CLI: refused with the way out named; read when given it.
  const refused = run(process.execPath, [CLI, 'convert', '-O', 'raw', child, s.path('st-cli.raw')]);
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /stale.*--accept-changed-backing/);
  dwOk(['convert', '--accept-changed-backing', '-O', 'raw', child, s.path('st-cli.raw')]);
  assert.ok(readFileSync(s.path('st-cli.raw')).equals(readFileSync(theirs)), 'the CLI reads the accepted chain as qemu reads it');
  // info describes it (no failure), with qemu's keys as qemu-img gives them plus ours.
  const mine = JSON.parse(dwOk(['info', '--output', 'json', child]).stdout);
  const q = qinfo(child);
  assert.equal(mine['format-specific'].data['parent-cid-stale'], true);
  for (const k of ['cid', 'parent-cid', 'create-type']) assert.equal(mine['format-specific'].data[k], q['format-specific'].data[k]);
  assert.equal(mine['backing-filename'], q['backing-filename']);
  assert.equal(JSON.parse(dwOk(['info', '--output', 'json', fixed]).stdout)['format-specific'].data['parent-cid-stale'], undefined);
});

/** Rebases `child` (opened without its chain) onto `name`, through the hook. */
async function rebase(child: string, name: string | undefined, format?: 'vmdk' | 'qcow2'): Promise<void> {
  const dev = await openImage(child, { readOnly: false, backingPolicy: 'none' });
  try {
    await dev.setBackingFile!(name, format, name === undefined ? undefined : s.path(name));
  } finally {
    await dev.close();
  }
}

for (const sub of ['monolithicSparse', 'twoGbMaxExtentSparse']) {
  test(`setBackingFile on a ${sub} child: qemu-img info shows the new parent and compare matches the expected content`, async () => {
    const a = s.path(`rb-a-${sub}.vmdk`);
    const b = s.path(`rb-b-${sub}.vmdk`);
    const child = s.path(`rb-c-${sub}.vmdk`);
    qemuCreate(a, '', '2M');
    io(a, ['write -P 0x0a 0 2M']);
    qemuCreate(b, '', '2M');
    io(b, ['write -P 0x0b 0 1M']);
    qemuCreate(child, `subformat=${sub}`, '2M', `rb-a-${sub}.vmdk`);
    io(child, ['write -P 0x0c 128k 64k']);
    await rebase(child, `rb-b-${sub}.vmdk`, 'vmdk');
    const q = qinfo(child);
    assert.equal(q['backing-filename'], `rb-b-${sub}.vmdk`);
    assert.equal(q['format-specific'].data['parent-cid'], qinfo(b)['format-specific'].data.cid);
    assert.equal(q['format-specific'].data['create-type'], sub);
    const expected = s.path(`rb-exp-${sub}.raw`);
    must('qemu-img', ['convert', '-O', 'raw', b, expected]);
    must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x0c 128k 64k', expected]);
    assertQemuAccepts(child, expected);
    // The layout qemu-img create gives a child of that parent: only the CID differs.
    const made = s.path(`rb-made-${sub}.vmdk`);
    qemuCreate(made, `subformat=${sub}`, '2M', `rb-b-${sub}.vmdk`);
    const norm = (p: string, own: string) => descriptorOf(p).replace(/^CID=.*$/m, '').split(own).join('X');
    assert.equal(norm(child, `rb-c-${sub}`), norm(made, `rb-made-${sub}`));
    // No parent: the image stands alone (qemu: no backing file; the unwritten ranges read as zeros).
    await rebase(child, undefined);
    const alone = qinfo(child);
    assert.equal(alone['backing-filename'], undefined);
    assert.equal(alone['format-specific'].data['parent-cid'], 0xffffffff);
    const zeros = s.path(`rb-zero-${sub}.raw`);
    must('qemu-img', ['create', '-q', '-f', 'raw', zeros, '2M']);
    must('qemu-io', ['-f', 'raw', '-c', 'write -P 0x0c 128k 64k', zeros]);
    assertQemuAccepts(child, zeros);
    const fresh = s.path(`rb-fresh-${sub}.vmdk`);
    qemuCreate(fresh, `subformat=${sub}`, '2M');
    assert.equal(norm(child, `rb-c-${sub}`), norm(fresh, `rb-fresh-${sub}`));
  });
}

test('setBackingFile: a non-VMDK parent gets parentCID ffffffff; a descriptor that does not fit is refused and left as it was', async () => {
  const q = s.path('nv-base.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', q, '2M']);
  const child = s.path('nv-child.vmdk');
  qemuCreate(child, '', '2M');
  await rebase(child, 'nv-base.qcow2', 'qcow2');
  assert.match(descriptorOf(child), /^parentCID=ffffffff$/m);
  assert.match(descriptorOf(child), /^parentFileNameHint="nv-base.qcow2"$/m);
  // An embedded descriptor with one sector of room (VMware's small files): a long name does not fit.
  const small = s.path('nv-small.vmdk');
  qemuCreate(small, '', '2M');
  const b = readFileSync(small);
  b.writeBigUInt64LE(1n, 36); // descriptorSize: 1 sector
  b.fill(0, 512 + 480, 512 * 21);
  b.write('\n', 512 + 479, 'latin1');
  writeFileSync(small, b);
  const before = readFileSync(small);
  await assert.rejects(rebase(small, 'dir/'.repeat(150) + 'p.vmdk', 'vmdk'), (e: unknown) => e instanceof DiskError && e.code === 'EINVAL' && /does not fit/.test(e.message));
  assert.ok(readFileSync(small).equals(before), 'the image is unchanged');
});

test('makeEmpty: every grain unallocated again, the file cut back; qemu reads the parent through it and check passes', async () => {
  const base = s.path('me-base.vmdk');
  const child = s.path('me-child.vmdk');
  qemuCreate(base, '', '4M');
  io(base, ['write -P 0x51 0 4M']);
  qemuCreate(child, '', '4M', 'me-base.vmdk');
  io(child, ['write -P 0x52 0 1M', 'write -P 0x53 3M 100k']);
  const full = statSync(child).size;
  // What commit does: copy the child's data down, then empty the child.
  io(base, ['write -P 0x52 0 1M', 'write -P 0x53 3M 100k']);
  const dev = await openImage(child, { readOnly: false, backingPolicy: 'anywhere', acceptChangedBacking: true });
  try {
    await dev.makeEmpty!();
  } finally {
    await dev.close();
  }
  assert.ok(statSync(child).size < full, `the grains' space is given back (${statSync(child).size} < ${full})`);
  const map = JSON.parse(must('qemu-img', ['map', '--output', 'json', child]).stdout) as Array<{ depth: number }>;
  assert.ok(map.every((r) => r.depth === 1), 'every range comes from the parent');
  // The child is valid against the parent's new content: qemu reads it (a stale parentCID would fail).
  const raw = s.path('me-base.raw');
  must('qemu-img', ['convert', '-O', 'raw', base, raw]);
  assertQemuAccepts(child, raw);
});

test('extents outside the folder: EOUTSIDE naming the real extent path, readable with a grant for that pair; check follows its policy', async () => {
  const inner = join(s.dir, 'gr');
  mkdirSync(inner);
  const ext = s.path('gr-outside.bin');
  writeFileSync(ext, Buffer.alloc(8192, 7));
  symlinkSync(ext, join(inner, 'gr-link.bin'));
  const direct = join(inner, 'direct.vmdk');
  writeFileSync(direct, '# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 16 FLAT "../gr-outside.bin" 0\n');
  const linked = join(inner, 'linked.vmdk');
  writeFileSync(linked, '# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 16 FLAT "gr-link.bin" 0\n');
  const real = realpathSync(ext);
  const qemuRaw = s.path('gr-qemu.raw');
  must('qemu-img', ['convert', '-O', 'raw', direct, qemuRaw]);
  for (const p of [direct, linked]) {
    const grants = new Set<string>();
    const policy: BackingGrantPolicy = { allows: (image, backing) => grants.has(`${image}\0${backing}`), ungranted: 'refuse' };
    let err: unknown;
    await openImage(p, { backingPolicy: policy }).catch((e: unknown) => (err = e));
    assert.ok(err instanceof DiskError && err.code === 'EOUTSIDE', `${p}: refused without a grant`);
    assert.equal((err as DiskError).path, real);
    grants.add(`${p}\0${(err as DiskError).path}`); // what the app grants after asking
    assert.ok(Buffer.from(await readAll(p, { backingPolicy: policy })).equals(readFileSync(qemuRaw)));
    await assert.rejects(vmdkDriver.check!(p, 'none'), (e: unknown) => e instanceof DiskError && e.code === 'EOUTSIDE');
    assert.equal((await vmdkDriver.check!(p, 'none', { backingPolicy: 'anywhere' })).corruptions, 0);
    assert.equal((await vmdkDriver.check!(p, 'none', { backingPolicy: policy })).corruptions, 0);
  }
});
