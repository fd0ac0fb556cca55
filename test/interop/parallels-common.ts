/**
 * Parallels images for the interop suites, made by qemu-img and qemu-io only (a few patched in place to the
 * old "WithoutFreeSpace" magic or to known damage), and small helpers to compare with qemu-img.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { dw, must, run } from '../helpers';
import { qemuIo } from '../oracles';

export interface PrlCase {
  name: string;
  make: (path: string) => void;
}

export const io = (path: string, cmds: string[]): void => void qemuIo(path, 'parallels', cmds);
export const create = (path: string, size: string, clusterSize?: string) =>
  must('qemu-img', ['create', '-q', '-f', 'parallels', ...(clusterSize ? ['-o', `cluster_size=${clusterSize}`] : []), path, size]);

/**
 * Turns an extended image into an old one: magic "WithoutFreeSpace" and BAT entries counting sectors (the
 * same file layout otherwise), which qemu reads the same.
 */
export function toOldMagic(path: string): void {
  const b = readFileSync(path);
  b.write('WithoutFreeSpace', 0, 'latin1');
  const tracks = b.readUInt32LE(28);
  const n = b.readUInt32LE(32);
  for (let i = 0; i < n; i++) b.writeUInt32LE(b.readUInt32LE(64 + 4 * i) * tracks, 64 + 4 * i);
  writeFileSync(path, b);
}

/** Writes a 32-bit little-endian field of the file in place. */
export function patch32(path: string, at: number, value: number): void {
  const b = readFileSync(path);
  b.writeUInt32LE(value >>> 0, at);
  writeFileSync(path, b);
}

export const PRL_CASES: PrlCase[] = [
  {
    name: 'default 1 MiB clusters, scattered writes, one at the very end',
    make: (p) => {
      create(p, '8M');
      io(p, ['write -P 0x11 0 64k', 'write -P 0x22 3M 1536k', 'write -P 0x33 8388096 512']);
    },
  },
  {
    name: '512-byte clusters (BAT longer than one cluster), unaligned writes',
    make: (p) => {
      create(p, '1M', '512');
      io(p, ['write -P 0x44 1000 5000', 'write -P 0x45 700000 1', 'write -z 4096 512']);
    },
  },
  {
    name: '4 KiB clusters, writes in reverse order (host order differs from guest order)',
    make: (p) => {
      create(p, '2M', '4k');
      io(p, ['write -P 0x51 1M 8k', 'write -P 0x52 512k 12k', 'write -P 0x53 0 4k', 'write -P 0x54 1028k 4k']);
    },
  },
  {
    name: '64 KiB clusters, size not a multiple of the cluster',
    make: (p) => {
      create(p, '1000000', '64k');
      io(p, ['write -P 0x61 65000 70000', 'write -P 0x62 999424 576']);
    },
  },
  {
    name: 'odd cluster size 3000000 (rounded to sectors by qemu-img)',
    make: (p) => {
      create(p, '10M', '3000000');
      io(p, ['write -P 0x71 2999000 3000', 'write -P 0x72 9M 4k']);
    },
  },
  {
    name: 'old "WithoutFreeSpace" magic (BAT in sectors), 64 KiB clusters',
    make: (p) => {
      create(p, '4M', '64k');
      io(p, ['write -P 0x81 128k 100k', 'write -P 0x82 0 512']);
      toOldMagic(p);
    },
  },
];

/** `diskwright map --output json` and qemu-img's, parsed. */
export function maps(p: string): { ours: unknown; qemu: unknown } {
  const o = dw(['map', '--output', 'json', p]);
  assert.equal(o.status, 0, o.stderr);
  return { ours: JSON.parse(o.stdout), qemu: JSON.parse(must('qemu-img', ['map', '-f', 'parallels', '--output', 'json', p]).stdout) };
}

/** qemu-img check's JSON (its exit code is part of the verdict, so it is not `must`). */
export function qemuCheck(p: string, ...extra: string[]): { status: number; json: Record<string, unknown>; stderr: string } {
  const r = run('qemu-img', ['check', '-f', 'parallels', ...extra, '--output', 'json', p]);
  return { status: r.status, json: r.stdout.trim() ? JSON.parse(r.stdout) : {}, stderr: r.stderr };
}

export function ourCheck(p: string, ...extra: string[]): { status: number; json: Record<string, unknown>; stderr: string } {
  const r = dw(['check', ...extra, '--output', 'json', p]);
  return { status: r.status, json: r.stdout.trim() ? JSON.parse(r.stdout) : {}, stderr: r.stderr };
}

/** The check JSON without the file name (the copies differ in name). */
export function counts(j: Record<string, unknown>): Record<string, unknown> {
  const { filename: _f, ...rest } = j;
  return rest;
}
