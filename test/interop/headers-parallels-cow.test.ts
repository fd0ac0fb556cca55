/**
 * `diskwright info` on Parallels images made by qemu-img (against qemu-img info) and on UML COW files made by
 * uml_mkcow (qemu-img does not know COW: the truth is the header uml_mkcow wrote, whose size is the backing
 * file's size, and uml_moo's merge of it).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { dw, dwOk, must, run, scratch } from '../helpers';
import { CLOSED_MAGIC, INUSE_MAGIC, parseHeader as parsePrl, serializeHeader as serializePrl } from '../../src-main/formats/parallels/layout';
import { serializeHeader as serializeCow } from '../../src-main/formats/cow/layout';

const s = scratch('dw-hdr-prl-cow-');
after(() => s.cleanup());

type Info = Record<string, any>;
const ours = (p: string, ...extra: string[]): Info => JSON.parse(dwOk(['info', ...extra, '--output', 'json', p]).stdout);
const qemus = (p: string): Info => JSON.parse(must('qemu-img', ['info', '--output', 'json', p]).stdout);

// ---- Parallels ----

const PRL: Array<[string, string]> = [
  ['', '100M'],
  ['cluster_size=64k', '33M'],
  ['cluster_size=4M', '1G'],
  ['cluster_size=1M', '1000000'],
  ['', '2T'],
];

PRL.forEach(([opts, size], i) => {
  test(`parallels ${opts || 'default'} ${size} made by qemu-img: info matches qemu-img info`, () => {
    const p = s.path(`p${i}.hds`);
    must('qemu-img', ['create', '-q', '-f', 'parallels', ...(opts ? ['-o', opts] : []), p, size]);
    const q = qemus(p);
    const o = ours(p);
    assert.equal(o.format, 'parallels');
    assert.equal(o.format, q.format);
    assert.equal(o['virtual-size'], q['virtual-size']);
    // qemu-img gives no cluster size for parallels; ours is the header's tracks field.
    const tracks = readFileSync(p).readUInt32LE(28);
    assert.equal(o['cluster-size'], tracks * 512);
    if (opts) assert.equal(o['cluster-size'], { 'cluster_size=64k': 65536, 'cluster_size=4M': 4 << 20, 'cluster_size=1M': 1 << 20 }[opts]);
    assert.equal(o['dirty-flag'], false);
  });
});

test('parallels written by qemu-io keeps its header; in_use = 0x746F6E59 is dirty', () => {
  const p = s.path('written.hds');
  must('qemu-img', ['create', '-q', '-f', 'parallels', p, '16M']);
  must('qemu-io', ['-f', 'parallels', '-c', 'write -P 0x77 0 2M', p]);
  assert.equal(ours(p)['virtual-size'], qemus(p)['virtual-size']);
  const b = readFileSync(p);
  const h = parsePrl(b.subarray(0, 64), p);
  assert.notEqual(h.inUse, INUSE_MAGIC, 'qemu-io closed it cleanly');
  b.set(serializePrl({ ...h, inUse: INUSE_MAGIC }), 0);
  writeFileSync(p, b);
  assert.equal(ours(p)['dirty-flag'], true);
  // qemu refuses to open an unclean image read-write until it is checked.
  assert.notEqual(run('qemu-io', ['-f', 'parallels', '-c', 'write 0 512', p]).status, 0);
  b.set(serializePrl({ ...h, inUse: CLOSED_MAGIC }), 0);
  writeFileSync(p, b);
  assert.equal(ours(p)['dirty-flag'], false);
});

test('old "WithoutFreeSpace" parallels image: only the low 32 bits of nb_sectors count, as in qemu', () => {
  const p = s.path('old.hds');
  must('qemu-img', ['create', '-q', '-f', 'parallels', p, '8M']);
  const b = readFileSync(p);
  const h = parsePrl(b.subarray(0, 64), p);
  // An old-style image: BAT in sectors; the high half of nb_sectors is junk and must be ignored.
  const hdr = serializePrl({ ...h, extended: false });
  const v = new DataView(hdr.buffer);
  v.setUint32(40, 0xdeadbeef, true);
  b.set(hdr, 0);
  writeFileSync(p, b);
  const q = qemus(p);
  const o = ours(p);
  assert.equal(o['virtual-size'], 8 * 1024 * 1024);
  assert.equal(o['virtual-size'], q['virtual-size']);
  assert.equal(o['format-specific'].data.subformat, 'WithoutFreeSpace');
});

test('parallels version 3, zero tracks, or a BAT past the end of the file: one plain line each, as qemu-img refuses them', () => {
  const p = s.path('bad.hds');
  must('qemu-img', ['create', '-q', '-f', 'parallels', p, '8M']);
  const good = readFileSync(p);
  const edits: Array<[string, (b: Buffer) => void, RegExp]> = [
    ['version 3', (b) => b.writeUInt32LE(3, 16), /version 3/],
    ['zero tracks', (b) => b.writeUInt32LE(0, 28), /zero sectors per cluster/],
    ['huge BAT', (b) => b.writeUInt32LE(0x10000000, 32), /BAT/],
  ];
  for (const [label, edit, re] of edits) {
    const b = Buffer.from(good);
    edit(b);
    writeFileSync(p, b);
    const r = dw(['info', p]);
    assert.equal(r.status, 1, label);
    assert.equal(r.stderr.trim().split('\n').length, 1, `${label}: ${r.stderr}`);
    assert.match(r.stderr, re, label);
    if (label !== 'huge BAT') assert.notEqual(run('qemu-img', ['info', '-f', 'parallels', p]).status, 0, `qemu-img refuses ${label}`);
  }
});

// ---- UML COW ----

for (const size of [1000000, 4 * 1024 * 1024, 10 * 1024 * 1024 * 1024 + 512]) {
  test(`uml_mkcow over a ${size}-byte backing file: size, backing file and layout match what uml_mkcow wrote`, () => {
    const back = s.path(`back-${size}.img`);
    writeFileSync(back, Buffer.alloc(0));
    must('truncate', ['-s', String(size), back]);
    const cow = s.path(`c-${size}.cow`);
    must('uml_mkcow', [cow, back]);
    const o = ours(cow);
    assert.equal(o.format, 'cow');
    assert.equal(o['virtual-size'], statSync(back).size, 'the size is the backing file size');
    assert.equal(o['backing-filename'], back);
    assert.equal(o['full-backing-filename'], back);
    assert.equal(o['format-specific'].data.version, 3, 'uml_mkcow writes version 3');
    assert.equal(o['format-specific'].data.layout, 'v3');
    assert.equal(o['format-specific'].data['sector-size'], 512);
    // uml_mkcow makes the file exactly data-offset + size long: our computed data offset agrees.
    assert.equal(o['format-specific'].data['data-offset'] + size, statSync(cow).size);
    assert.equal(o['format-specific'].data['backing-mtime'], Math.floor(statSync(back).mtimeMs / 1000));
    // qemu-img has no cow driver: it takes the file as raw.
    assert.equal(qemus(cow).format, 'raw');
  });
}

test('uml_mkcow with a relative backing name: the header holds the absolute path, and the chain is followed', () => {
  const back = s.path('rel-back.img');
  writeFileSync(back, Buffer.alloc(65536, 1));
  must('uml_mkcow', ['rel.cow', 'rel-back.img'], { cwd: s.dir });
  const o = ours(s.path('rel.cow'));
  assert.equal(o['backing-filename'], back);
  const chain = JSON.parse(dwOk(['info', '--backing-chain', '--output', 'json', s.path('rel.cow')]).stdout);
  assert.equal(chain.length, 2);
  assert.equal(chain[1].format, 'raw');
  assert.equal(chain[1]['virtual-size'], 65536);
});

test('uml_moo merges a COW file whose header we read (the header is the one UML tools agree on)', () => {
  const back = s.path('moo-back.img');
  writeFileSync(back, Buffer.alloc(1 << 20, 0xaa));
  const cow = s.path('moo.cow');
  must('uml_mkcow', [cow, back]);
  const merged = s.path('moo-merged.img');
  must('uml_moo', [cow, merged]);
  assert.equal(statSync(merged).size, ours(cow)['virtual-size']);
});

test('hand-built COW versions 1, 2 (kernel and qemu layouts) and the broken 64-bit v3 are read', () => {
  const base = { backingFile: '/images/base.img', mtime: 1234567, size: 8 * 1024 * 1024, sectorSize: 512, alignment: 512, cowFormat: 0, littleEndian: true };
  const layouts = ['v1', 'v2-time32', 'v2-time64', 'v2-qemu', 'v2-qemu-i386', 'v3', 'v3-broken'] as const;
  for (const layout of layouts) {
    const hdr = serializeCow({ ...base, layout, alignment: layout.startsWith('v3') ? 4096 : 512 });
    const p = s.path(`hand-${layout}.cow`);
    const file = Buffer.alloc(hdr.length + 16384 + 8192);
    file.set(hdr, 0);
    writeFileSync(p, file);
    const o = ours(p);
    assert.equal(o['virtual-size'], base.size, layout);
    assert.equal(o['backing-filename'], base.backingFile, layout);
    assert.equal(o['format-specific'].data.layout, layout);
    assert.equal(o['format-specific'].data['backing-mtime'], base.mtime, layout);
  }
});

test('COW damage: unknown version, bad sector size, unterminated name give one plain line', () => {
  const back = s.path('dmg-back.img');
  writeFileSync(back, Buffer.alloc(8192));
  const cow = s.path('dmg.cow');
  must('uml_mkcow', [cow, back]);
  const good = readFileSync(cow);
  const edits: Array<[string, (b: Buffer) => void, RegExp]> = [
    ['version 9', (b) => b.writeUInt32BE(9, 4), /version 9/],
    ['sector size 3', (b) => b.writeUInt32BE(3, 20), /sector size/],
    ['unterminated name', (b) => b.fill(0x41, 32, 32 + 4096), /not terminated/],
  ];
  for (const [label, edit, re] of edits) {
    const b = Buffer.from(good);
    edit(b);
    writeFileSync(cow, b);
    const r = dw(['info', cow]);
    assert.equal(r.status, 1, label);
    assert.equal(r.stderr.trim().split('\n').length, 1, `${label}: ${r.stderr}`);
    assert.match(r.stderr, re, label);
  }
});
