/**
 * The app's "inside the disk" test disk, built only with the oracles' tools: a GPT (sgdisk) holding ext4
 * (mke2fs -d, then a file deleted with debugfs so that the image keeps data the file system marks free), FAT
 * (mkfs.vfat + mcopy) and NTFS (mkfs.ntfs + ntfscp), written into a raw file and converted to qcow2 by qemu-img.
 * Used by test/e2e/inside.test.ts and test/interop/inside-app-api.test.ts.
 */
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { must, seededRandom } from '../helpers';
import { makeExt, makeFat, makeNtfs, placeAt } from './inside-common';

const MiB = 1 << 20;

export interface AppDisk {
  qcow2: string;
  raw: string;
  /** The trees put into each file system. */
  extTree: string;
  fatTree: string;
  ntfsFile: string;
  /** Byte offsets and sizes of the three partitions (1 ext4, 2 FAT, 3 NTFS). */
  parts: Array<{ number: number; start: number; size: number }>;
  /** The ext4 file system image as it was placed (for dumpe2fs). */
  extImage: string;
}

function randomBytes(rnd: () => number, n: number): Buffer {
  const buf = Buffer.alloc(n);
  for (let j = 0; j + 4 <= n; j += 4) buf.writeUInt32LE((rnd() * 0x100000000) >>> 0, j);
  return buf;
}

/** `bigFolderMiB`: the size of ext4's /big folder (random data, so that copying it takes a while). */
export function buildAppDisk(dir: string, bigFolderMiB = 96): AppDisk {
  const rnd = seededRandom(22);
  const extTree = join(dir, 'ext-tree');
  mkdirSync(join(extTree, 'docs', 'notes'), { recursive: true });
  mkdirSync(join(extTree, 'big'), { recursive: true });
  writeFileSync(join(extTree, 'hello.txt'), 'hello from ext4\n');
  writeFileSync(join(extTree, 'docs', 'readme.txt'), 'read me\n'.repeat(100));
  writeFileSync(join(extTree, 'docs', 'report.bin'), randomBytes(rnd, 300_000));
  writeFileSync(join(extTree, 'docs', 'Zeta small.txt'), 'z\n');
  writeFileSync(join(extTree, 'docs', 'notes', 'a.txt'), 'a\n');
  symlinkSync('docs/readme.txt', join(extTree, 'link-to-readme'));
  for (let i = 0; i < bigFolderMiB / 4; i++) writeFileSync(join(extTree, 'big', `part-${String(i).padStart(3, '0')}.bin`), randomBytes(rnd, 4 * MiB));
  // Deleted after mke2fs: its blocks keep their data but are free in the file system.
  writeFileSync(join(extTree, 'scratch.bin'), randomBytes(rnd, 8 * MiB));

  const fatTree = join(dir, 'fat-tree');
  mkdirSync(join(fatTree, 'EFI', 'BOOT'), { recursive: true });
  writeFileSync(join(fatTree, 'EFI', 'BOOT', 'BOOTX64.EFI'), randomBytes(rnd, 200_000));
  writeFileSync(join(fatTree, 'startup.nsh'), 'fs0:\\EFI\\BOOT\\BOOTX64.EFI\n');

  const ntfsFile = join(dir, 'ntfs-file.bin');
  writeFileSync(ntfsFile, randomBytes(rnd, 1_234_567));

  const extSize = bigFolderMiB + 64;
  const parts = [
    { number: 1, start: 1 * MiB, size: extSize * MiB },
    { number: 2, start: (1 + extSize) * MiB, size: 32 * MiB },
    { number: 3, start: (33 + extSize) * MiB, size: 32 * MiB },
  ];
  const raw = join(dir, 'inside.raw');
  must('truncate', ['-s', `${extSize + 66}M`, raw]);
  must('sgdisk', [
    '-o',
    '-U', '11111111-2222-3333-4444-555555555555',
    '-n', `1:${parts[0].start / 512}:+${extSize}M`, '-t', '1:8300', '-c', '1:root',
    '-n', `2:${parts[1].start / 512}:+32M`, '-t', '2:ef00', '-c', '2:EFI system',
    '-n', `3:${parts[2].start / 512}:+32M`, '-t', '3:0700', '-c', '3:data',
    raw,
  ]);

  const extImage = join(dir, 'ext.img');
  makeExt(extImage, extTree, `${extSize}M`, ['-t', 'ext4', '-L', 'rootfs', '-U', '0e1f2d3c-4b5a-6978-8796-a5b4c3d2e1f0']);
  must('debugfs', ['-w', '-R', 'rm scratch.bin', extImage]);
  placeAt(raw, extImage, parts[0].start);

  const fatImage = join(dir, 'fat.img');
  makeFat(fatImage, fatTree, '32M', ['-n', 'ESP', '-i', '1234ABCD']);
  placeAt(raw, fatImage, parts[1].start);

  const ntfsImage = join(dir, 'ntfs.img');
  makeNtfs(ntfsImage, '32M', [{ src: ntfsFile, name: 'payload.bin' }], 'WINDATA');
  placeAt(raw, ntfsImage, parts[2].start);

  const qcow2 = join(dir, 'inside.qcow2');
  must('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
  return { qcow2, raw, extTree, fatTree, ntfsFile, parts, extImage };
}
