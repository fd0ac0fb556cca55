/** Raw images made by qemu-img and qemu-io for the raw interop suites: holes, zero runs, odd sizes, data at the end. */
import { statSync } from 'node:fs';
import { must } from '../helpers';
import { qemuIo } from '../oracles';

export interface RawCase {
  name: string;
  /** Builds the image at `path` with qemu-img / qemu-io only. */
  make: (path: string) => void;
}

const io = (path: string, cmds: string[]): void => void qemuIo(path, 'raw', cmds);

export const RAW_CASES: RawCase[] = [
  {
    name: 'empty 1 MiB',
    make: (p) => must('qemu-img', ['create', '-q', '-f', 'raw', p, '1M']),
  },
  {
    name: 'holes, write -z, zeros written as data, data at the very end',
    make: (p) => {
      must('qemu-img', ['create', '-q', '-f', 'raw', p, '4M']);
      io(p, ['write -P 0xab 0 4k', 'write -P 0x5c 1M 64k', 'write -z 2M 64k', 'write -P 0 3M 64k', 'write -P 0xee 4193792 512']);
    },
  },
  {
    name: 'size not a multiple of 512 (qemu-img create 1000000, resized to 1000001) with data up to the last byte',
    make: (p) => {
      must('qemu-img', ['create', '-q', '-f', 'raw', p, '1000000']);
      must('qemu-img', ['resize', '-q', '-f', 'raw', '--shrink', p, '1000001']);
      io(p, ['write -P 0x11 999000 1001', 'write -P 0x22 4096 100']);
    },
  },
  {
    name: 'odd size 777 bytes, all data',
    make: (p) => {
      must('qemu-img', ['create', '-q', '-f', 'raw', p, '1024']);
      io(p, ['write -P 0x7f 0 512']);
      must('qemu-img', ['resize', '-q', '-f', 'raw', '--shrink', p, '777']);
    },
  },
  {
    name: 'fully written 2 MiB with a zero run in the middle (write -z over data)',
    make: (p) => {
      must('qemu-img', ['create', '-q', '-f', 'raw', p, '2M']);
      io(p, ['write -P 0x42 0 2M', 'write -z 512k 128k', 'write -P 0 1536k 4k']);
    },
  },
  {
    name: 'sparse 300 MiB with a few scattered writes',
    make: (p) => {
      must('qemu-img', ['create', '-q', '-f', 'raw', p, '300M']);
      io(p, ['write -P 1 0 512', 'write -P 2 150M 8k', 'write -P 3 314568704 4k', 'write -P 4 7777k 1k']);
    },
  },
];

/** Bytes the file system has allocated for the file. */
export function allocated(path: string): number {
  return statSync(path).blocks * 512;
}
