/**
 * Disks for the "inside the disk" suites, built only with the oracles' tools: sfdisk/sgdisk for the tables,
 * mke2fs -d, mkfs.vfat + mcopy, mkfs.ntfs + ntfscp for the file systems (each made as its own file and written
 * into its partition with dd), and a generated tree of files (long and non-ASCII names, large, sparse, a symlink).
 */
import assert from 'node:assert/strict';
import { mkdirSync, openSync, closeSync, writeSync, ftruncateSync, writeFileSync, symlinkSync, readdirSync, lstatSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { must, run, seededRandom } from '../helpers';

const ALL_NAMES = ['Überweisung', 'résumé', '日本語のファイル', 'Ελληνικά', 'a name with spaces and a long tail to pass the 8.3 limit', 'plain', 'ÆØÅ', 'emoji 🙂'];

/** A tree of `count` files under `dir` (some MiB, some sparse, long and non-ASCII names); returns the file paths. */
export function makeTree(dir: string, seed: number, count: number, opts: { symlink?: boolean; bigFiles?: number; bmpOnly?: boolean } = {}): string[] {
  // mtools stores names in the Basic Multilingual Plane only (it drops an emoji): FAT trees are made without one.
  const NAMES = opts.bmpOnly ? ALL_NAMES.filter((n) => !/[\u{10000}-\u{10ffff}]/u.test(n)) : ALL_NAMES;
  const rnd = seededRandom(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const files: string[] = [];
  for (let i = 0; i < count; i++) {
    const sub = join(dir, `${NAMES[i % 3]} ${i % 5}`, i % 2 ? `deeper ${NAMES[(i >> 1) % NAMES.length]}` : '');
    mkdirSync(sub, { recursive: true });
    const path = join(sub, `${NAMES[i % NAMES.length]} ${i}.${['txt', 'bin', 'dat'][i % 3]}`);
    if (i < (opts.bigFiles ?? 2)) {
      const buf = Buffer.alloc((1 << 20) + int(1 << 18) * 4);
      for (let j = 0; j < buf.length; j += 4) buf.writeUInt32LE((rnd() * 0x100000000) >>> 0, j);
      writeFileSync(path, buf);
    } else if (i % 17 === 5) {
      // Sparse: data islands in a hole.
      const fd = openSync(path, 'w');
      ftruncateSync(fd, (2 << 20) + int(1 << 20));
      writeSync(fd, Buffer.alloc(5000, 0x41 + (i % 26)), 0, 5000, 1 << 20);
      closeSync(fd);
    } else {
      writeFileSync(path, Buffer.from(`${i}:${'x'.repeat(int(9000))}\n`));
    }
    files.push(path);
  }
  if (opts.symlink) symlinkSync(`../${NAMES[0]} 0/${NAMES[0]} 0.txt`, join(dir, `${NAMES[0]} 0`, 'link to a file'));
  return files;
}

/** Asserts that two folders hold the same names, types, symlink targets and file contents. */
export function assertSameTree(expected: string, actual: string, ignore: string[] = []): number {
  let n = 0;
  const a = readdirSync(expected).filter((x) => !ignore.includes(x)).sort();
  const b = readdirSync(actual).filter((x) => !ignore.includes(x)).sort();
  assert.deepEqual(b, a, `names in ${actual}`);
  for (const name of a) {
    const ea = lstatSync(join(expected, name));
    const eb = lstatSync(join(actual, name));
    if (ea.isDirectory()) {
      assert.ok(eb.isDirectory(), `${name} is a folder`);
      n += assertSameTree(join(expected, name), join(actual, name));
    } else if (ea.isSymbolicLink()) {
      assert.ok(eb.isSymbolicLink(), `${name} is a symlink`);
      assert.equal(readlinkSync(join(actual, name)), readlinkSync(join(expected, name)));
    } else {
      assert.equal(eb.size, ea.size, `${name}: size`);
      assert.ok(readFileSync(join(actual, name)).equals(readFileSync(join(expected, name))), `${name}: content`);
      n++;
    }
  }
  return n;
}

/** Writes file system image `fs` into `disk` at byte `offset`. */
export function placeAt(disk: string, fs: string, offset: number): void {
  must('dd', [`if=${fs}`, `of=${disk}`, 'bs=64k', `seek=${offset}`, 'oflag=seek_bytes', 'conv=notrunc,sparse', 'status=none']);
}

/** blkid's view of the file system at `offset` (-p: probe the bytes, not the cache). */
export function blkid(disk: string, offset: number): Record<string, string> {
  const r = run('blkid', ['-p', '-o', 'export', '-O', String(offset), disk]);
  const out: Record<string, string> = {};
  for (const line of r.stdout.split('\n')) {
    const eq = line.indexOf('=');
    // -o export escapes spaces and other characters with a backslash.
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1).replace(/\\(.)/g, '$1');
  }
  return out;
}

/** sfdisk --json's partitions in the units: bytes. */
export function sfdiskPartitions(disk: string): { label: string; id: string; sectorSize: number; partitions: Array<{ number: number; start: number; size: number; type: string; uuid?: string; name?: string; bootable: boolean }> } {
  const t = JSON.parse(must('sfdisk', ['--json', disk]).stdout).partitiontable;
  const ss = t.sectorsize ?? 512;
  return {
    label: t.label,
    id: t.id,
    sectorSize: ss,
    partitions: t.partitions.map((p: any) => ({
      number: Number(/(\d+)$/.exec(p.node)![1]),
      start: p.start * ss,
      size: p.size * ss,
      type: p.type,
      ...(p.uuid ? { uuid: p.uuid } : {}),
      ...(p.name !== undefined ? { name: p.name } : {}),
      bootable: p.bootable === true,
    })),
  };
}

/** dumpe2fs's figures: used bytes as (block count - free blocks) × block size, and the free block ranges of every group. */
export function dumpe2fs(fs: string): { used: number; blockSize: number; free: Array<{ start: number; length: number }> } {
  const out = must('dumpe2fs', [fs]).stdout;
  const num = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(out)![1]);
  const bs = num('Block size');
  const free: Array<{ start: number; length: number }> = [];
  for (const m of out.matchAll(/^\s+Free blocks: (.*)$/gm)) {
    for (const part of m[1].split(',').map((s) => s.trim()).filter(Boolean)) {
      const [a, b] = part.split('-').map(Number);
      free.push({ start: a * bs, length: ((b ?? a) - a + 1) * bs });
    }
  }
  // Merge neighbours (dumpe2fs lists per group).
  free.sort((x, y) => x.start - y.start);
  const merged: typeof free = [];
  for (const r of free) {
    const last = merged[merged.length - 1];
    if (last && last.start + last.length === r.start) last.length += r.length;
    else merged.push({ ...r });
  }
  return { used: (num('Block count') - num('Free blocks')) * bs, blockSize: bs, free: merged };
}

/** An ext file system image holding `tree`: mke2fs -d with fixed UUID and hash seed; `extra` are mke2fs options. */
export function makeExt(image: string, tree: string, size: string, extra: string[] = []): void {
  must('mke2fs', ['-q', '-F', ...extra, '-E', 'hash_seed=00000000-0000-0000-0000-000000000001', '-d', tree, image, size], {});
}

/** A FAT image holding the tree (mcopy -s). */
export function makeFat(image: string, tree: string, size: string, extra: string[] = []): void {
  must('truncate', ['-s', size, image]);
  must('mkfs.vfat', [...extra, image]);
  const entries = readdirSync(tree).map((n) => join(tree, n));
  if (entries.length) must('mcopy', ['-s', '-i', image, ...entries, '::/']);
}

/** An NTFS image with the given files at its root (ntfscp writes one file at a time, into existing folders only). */
export function makeNtfs(image: string, size: string, files: Array<{ src: string; name: string }>, label = 'NTVOL'): void {
  must('truncate', ['-s', size, image]);
  must('mkfs.ntfs', ['-F', '-Q', '-q', '-L', label, image]);
  for (const f of files) must('ntfscp', ['-q', image, f.src, f.name]);
}
