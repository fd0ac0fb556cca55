// File systems identified as blkid -p names them (TYPE, LABEL, UUID, VERSION): XFS, Btrfs, LUKS1/LUKS2 and swap
// made by their own tools, and LVM2, exFAT and ISO 9660 (whose tools are not installed here) built byte by byte
// after their specifications, which blkid must recognise too, so the bytes are what the tools would write.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { writeFileSync } from 'node:fs';
import { dwOk, must, run, scratch } from '../helpers';
import { blkid } from './inside-common';
import { diskFreeMap } from '../../src-main/inside';
import { openImage } from '../../src-main/registry';

const s = scratch('dw-inside-id-');
after(() => s.cleanup());

function ours(path: string) {
  const got = JSON.parse(dwOk(['partitions', '--output', 'json', path]).stdout);
  assert.equal(got.table, null);
  assert.equal(got.partitions.length, 1, JSON.stringify(got));
  return got.partitions[0].filesystem;
}

function sameAsBlkid(path: string, keys: Array<'TYPE' | 'LABEL' | 'UUID' | 'VERSION'> = ['TYPE', 'LABEL', 'UUID']) {
  const b = blkid(path, 0);
  assert.ok(b.TYPE, `blkid recognises ${path}`);
  const fs = ours(path);
  const map = { TYPE: fs.type, LABEL: fs.label, UUID: fs.uuid, VERSION: fs.version };
  for (const k of keys) assert.equal(map[k], b[k], `${k} of ${path}`);
  return fs;
}

test('XFS (mkfs.xfs): type, label, UUID; used = (dblocks - fdblocks) × block size as xfs_db prints them', () => {
  const p = s.path('xfs.fs');
  must('truncate', ['-s', '300M', p]);
  must('mkfs.xfs', ['-q', '-L', 'xlabel', p]);
  const fs = sameAsBlkid(p);
  const db = must('xfs_db', ['-r', '-c', 'sb 0', '-c', 'print dblocks fdblocks blocksize', p]).stdout;
  const v = (k: string) => Number(new RegExp(`^${k} = (\\d+)`, 'm').exec(db)![1]);
  assert.equal(fs.used, (v('dblocks') - v('fdblocks')) * v('blocksize'));
  assert.equal(fs.flags, undefined);
});

test('Btrfs (mkfs.btrfs): type, label, UUID', () => {
  const p = s.path('btrfs.fs');
  must('truncate', ['-s', '128M', p]);
  must('mkfs.btrfs', ['-q', '-L', 'blabel', p]);
  sameAsBlkid(p);
});

for (const type of ['luks1', 'luks2']) {
  test(`${type} (cryptsetup luksFormat): type, version, UUID${type === 'luks2' ? ', label' : ''}`, () => {
    const p = s.path(`${type}.img`);
    must('truncate', ['-s', '20M', p]);
    must('cryptsetup', ['luksFormat', '-q', '--type', type, ...(type === 'luks2' ? ['--label', 'lux'] : []), '--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000', p, '-'], { input: Buffer.from('pw') });
    sameAsBlkid(p, ['TYPE', 'LABEL', 'UUID', 'VERSION']);
  });
}

test('swap (mkswap): type, label, UUID', () => {
  const p = s.path('swap.img');
  must('truncate', ['-s', '4M', p]);
  must('mkswap', ['-q', '-L', 'swappy', p]);
  sameAsBlkid(p);
});

/** LVM2's label CRC: its own variant (a nibble table, seed 0xf597a6cf, no final inversion). */
function lvmCrc(b: Uint8Array): number {
  const tab = Array.from({ length: 16 }, (_, i) => {
    let c = i;
    for (let k = 0; k < 4; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
    return c >>> 0;
  });
  let crc = 0xf597a6cf;
  for (const x of b) {
    crc ^= x;
    crc = (crc >>> 4) ^ tab[crc & 15];
    crc = (crc >>> 4) ^ tab[crc & 15];
  }
  return crc >>> 0;
}

test('an LVM2 physical volume (label, PV header, metadata area): type and UUID as blkid; the VG name from the metadata text', () => {
  const img = Buffer.alloc(4 << 20);
  const label = img.subarray(512, 1024);
  label.write('LABELONE', 0, 'latin1');
  label.writeBigUInt64LE(1n, 8); // the sector the label lies in
  label.writeUInt32LE(32, 20); // the PV header follows at byte 32
  label.write('LVM2 001', 24, 'latin1');
  const uuid = 'Ab3dEfGhIjKlMnOpQrStUvWxYz012345';
  label.write(uuid, 32, 'latin1');
  label.writeBigUInt64LE(BigInt(img.length), 64); // device size
  // data areas: one at 1 MiB, then the end of the list; metadata areas: one at 4 KiB, then the end.
  label.writeBigUInt64LE(1n << 20n, 72);
  label.writeBigUInt64LE(0n, 80);
  label.writeBigUInt64LE(4096n, 104);
  label.writeBigUInt64LE(BigInt((1 << 20) - 4096), 112);
  label.writeUInt32LE(lvmCrc(label.subarray(20)), 16);
  const mda = img.subarray(4096);
  mda.write(' LVM2 x[5A%r0N*>', 4, 'latin1');
  mda.writeUInt32LE(1, 20);
  mda.writeBigUInt64LE(4096n, 24);
  mda.writeBigUInt64LE(BigInt((1 << 20) - 4096), 32);
  const text = 'vg_test {\nid = "abc"\nseqno = 1\n}\n';
  mda.writeBigUInt64LE(512n, 40);
  mda.writeBigUInt64LE(BigInt(text.length), 48);
  mda.write(text, 512, 'latin1');
  const p = s.path('lvm.img');
  writeFileSync(p, img);
  const fs = sameAsBlkid(p, ['TYPE', 'UUID']);
  assert.equal(fs['volume-group'], 'vg_test');
});

/** exFAT's boot checksum over the first 11 sectors (the volume flags and percent-in-use bytes left out). */
function exfatBootChecksum(region: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < region.length; i++) {
    if (i === 106 || i === 107 || i === 112) continue;
    sum = ((sum & 1 ? 0x80000000 : 0) + (sum >>> 1) + region[i]) >>> 0;
  }
  return sum;
}

test('exFAT (boot region with its checksum, root folder with a label): type, label, UUID', () => {
  const ss = 512;
  const img = Buffer.alloc(8 << 20);
  const b = img.subarray(0, ss);
  b.set([0xeb, 0x76, 0x90]);
  b.write('EXFAT   ', 3, 'latin1');
  b.writeBigUInt64LE(BigInt(img.length / ss), 72); // volume length
  b.writeUInt32LE(128, 80); // FAT offset (sectors)
  b.writeUInt32LE(64, 84); // FAT length
  b.writeUInt32LE(256, 88); // cluster heap offset
  b.writeUInt32LE((img.length / ss - 256) / 8, 92); // clusters of 4 KiB
  b.writeUInt32LE(4, 96); // root folder cluster
  b.writeUInt32LE(0x1234abcd, 100); // volume serial
  b.writeUInt16LE(0x0100, 104); // revision 1.0
  b[108] = 9; // 512-byte sectors
  b[109] = 3; // 8 sectors a cluster
  b[110] = 1; // one FAT
  b[111] = 0x80;
  b.writeUInt16LE(0xaa55, 510);
  for (let i = 1; i <= 8; i++) img.writeUInt16LE(0xaa55, i * ss + 510); // extended boot sectors
  const sum = exfatBootChecksum(img.subarray(0, 11 * ss));
  for (let i = 0; i < ss; i += 4) img.writeUInt32LE(sum, 11 * ss + i);
  // The FAT: media, end-of-chain, then the bitmap (cluster 2), up-case table (3), root (4): each one cluster.
  const fat = img.subarray(128 * ss);
  [0xfffffff8, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff].forEach((v, i) => fat.writeUInt32LE(v, i * 4));
  const root = img.subarray(256 * ss + 2 * 4096);
  root[0] = 0x83; // volume label
  root[1] = 5;
  root.write('EXLAB', 2, 'utf16le');
  root[32] = 0x81; // allocation bitmap
  root.writeUInt32LE(2, 32 + 20);
  root.writeBigUInt64LE(BigInt(Math.ceil(((img.length / ss - 256) / 8) / 8)), 32 + 24);
  img[256 * ss] = 0x07; // clusters 2, 3, 4 in use
  const p = s.path('exfat.img');
  writeFileSync(p, img);
  const fs = sameAsBlkid(p);
  assert.equal(fs.used, 3 * 4096);
});

test('ISO 9660 (primary volume descriptor and terminator): type, label, UUID from its dates', () => {
  const img = Buffer.alloc(40 * 2048);
  const pvd = img.subarray(16 * 2048, 17 * 2048);
  pvd[0] = 1;
  pvd.write('CD001', 1, 'latin1');
  pvd[6] = 1;
  pvd.write('LINUX'.padEnd(32), 8, 'latin1');
  pvd.write('MY_DISC'.padEnd(32), 40, 'latin1');
  pvd.writeUInt32LE(40, 80);
  pvd.writeUInt32BE(40, 84);
  pvd.writeUInt16LE(2048, 128);
  pvd.writeUInt16BE(2048, 130);
  pvd.write('2026120603041500\0', 813, 'latin1'); // created
  pvd.write('2026120603051600\0', 830, 'latin1'); // modified
  pvd[881] = 1;
  const term = img.subarray(17 * 2048);
  term[0] = 255;
  term.write('CD001', 1, 'latin1');
  term[6] = 1;
  const p = s.path('disc.iso');
  writeFileSync(p, img);
  sameAsBlkid(p);
});

test('an unknown file system is "unknown" with its first bytes', () => {
  const p = s.path('junk.img');
  writeFileSync(p, Buffer.concat([Buffer.from('not a file system at all'), Buffer.alloc(1 << 20)]));
  assert.equal(run('blkid', ['-p', p]).stdout, '');
  const got = JSON.parse(dwOk(['partitions', '--output', 'json', p]).stdout);
  assert.deepEqual(got.partitions, []);
  assert.match(got.findings[0].message, /6e 6f 74 20 61/);
  // The bytes come as data too (the app says them in its own sentence), and the finding has a name.
  const expected = [...Buffer.from('not a file system at all').subarray(0, 24), ...Buffer.alloc(8)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  assert.equal(got['first-bytes'], expected);
  assert.equal(got.findings[0].code, 'nothing-recognised');
  // A disk whose start is zeros says so in words, in the text output too; blkid and sfdisk find nothing there either.
  const zeros = s.path('zero-start.img');
  writeFileSync(zeros, Buffer.concat([Buffer.alloc(4096), Buffer.from('data further in'), Buffer.alloc(1 << 20)]));
  assert.equal(run('blkid', ['-p', zeros]).stdout, '');
  assert.notEqual(run('sfdisk', ['--json', zeros]).status, 0);
  const text = dwOk(['partitions', zeros]).stdout;
  assert.match(text, /info: no partition table and no known file system; the disk's first 32 bytes are zeros/);
  assert.doesNotMatch(text, /00 00/);
});

test('a small FAT32 (mkfs.vfat -F 32 with fewer clusters than FAT32 usually has) is FAT32, as blkid and the kernel say', () => {
  const p = s.path('small32.img');
  must('truncate', ['-s', '30M', p]);
  must('mkfs.vfat', ['-F', '32', '-n', 'SMALL32', p]);
  sameAsBlkid(p, ['TYPE', 'LABEL', 'UUID', 'VERSION']);
});

test('ext4 flags follow dumpe2fs: "not cleanly unmounted" (state not clean) and "journal needs recovery" (needs_recovery); no free map then', async () => {
  const p = s.path('dirty.ext4');
  must('mke2fs', ['-q', '-F', '-t', 'ext4', p, '8M']);
  assert.deepEqual(ours(p).flags, undefined);
  must('debugfs', ['-w', '-R', 'ssv state 0', p]);
  must('debugfs', ['-w', '-R', 'feature needs_recovery', p]);
  const d = must('dumpe2fs', ['-h', p]).stdout;
  assert.match(d, /Filesystem state:\s+not clean/);
  assert.match(d, /features:.*needs_recovery/);
  assert.deepEqual(ours(p).flags, ['not cleanly unmounted', 'journal needs recovery']);
  // Compaction must leave it alone: its bitmaps cannot be trusted until the journal is replayed.
  const dev = await openImage(p, { readOnly: true, backingPolicy: 'none' });
  try {
    const m = await diskFreeMap(dev);
    assert.deepEqual(m.ranges, []);
    assert.equal(m.partitions[0].status, 'kept');
    assert.match(m.partitions[0].reason!, /run fsck in the guest first/);
  } finally {
    await dev.close();
  }
});
