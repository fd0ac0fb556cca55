/**
 * The qcow2 check's fast paths against qemu-img check: data clusters counted a run at a time, compressed
 * clusters counted inline, whole refcount blocks compared at once, the COPIED check answered from marks the
 * walk left, L2 tables read ahead and kept, and the snapshot table read only as far as it goes. Each image has
 * long runs of data clusters (as qemu-img lays them out) and, where named, damage inside such a run, where a
 * fast path must step aside; qemu-img's JSON report, its messages and its exit code are the truth.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { truncateSync } from 'node:fs';
import { must, qemuIo, run, scratch } from '../helpers';
import { Qcow2Patcher } from './qcow2-check-patch';
import { checkQcow2 } from '../../src-main/formats/qcow2/check/check';
import { checkExitCode } from '../../src-main/services/check';
import { checkJson, checkText } from '../../src-main/cli/output';

const s = scratch('dw-qcow2-check-runs-');
after(() => s.cleanup());

const COPIED = 1n << 63n;
const OFFSET = 0x00fffffffffffe00n;

function create(img: string, opts: string, size: string): void {
  must('qemu-img', ['create', '-q', '-f', 'qcow2', ...(opts ? ['-o', opts] : []), img, size]);
}

/** Everything a tool said, as sorted lines (qemu-img puts its messages on stderr, the summary on stdout). */
function lines(...texts: string[]): string[] {
  return texts
    .join('\n')
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('qemu-img:') && !l.startsWith('qcow2:'))
    .sort();
}

interface Scenario {
  name: string;
  make: (img: string) => void;
  /** qemu-img's exit code, so that a scenario cannot pass by damaging nothing. */
  status: number;
}

const scenarios: Scenario[] = [
  {
    name: 'long runs in two L2 tables, a snapshot, copy-on-write over part of them',
    status: 0,
    make: (img) => {
      create(img, '', '1G');
      qemuIo(img, 'qcow2', ['write -P 0x11 0 6M', 'write -P 0x12 20M 3M', 'write -P 0x13 600M 2M']);
      must('qemu-img', ['snapshot', '-c', 'one', img]);
      qemuIo(img, 'qcow2', ['write -P 0x14 1M 2M', 'write -P 0x15 601M 64k']);
    },
  },
  {
    name: 'compressed clusters between runs of plain ones, two snapshots (tables shared three ways)',
    status: 0,
    make: (img) => {
      const raw = s.path(`${img}.src.raw`.split('/').pop()!);
      must('qemu-img', ['create', '-q', '-f', 'raw', raw, '64M']);
      qemuIo(raw, 'raw', ['write -P 0x21 0 8M', 'write -P 0x22 16M 4M']);
      must('qemu-img', ['convert', '-c', '-O', 'qcow2', raw, img]);
      must('qemu-img', ['snapshot', '-c', 'one', img]);
      qemuIo(img, 'qcow2', ['write -P 0x23 2M 3M', 'write -P 0x24 40M 2M']);
      must('qemu-img', ['snapshot', '-c', 'two', img]);
      qemuIo(img, 'qcow2', ['write -P 0x25 3M 1M']);
    },
  },
  {
    name: '1-bit refcounts: a cluster in the middle of a run referenced again afterwards (overflow)',
    status: 2,
    make: (img) => {
      create(img, 'refcount_bits=1', '64M');
      qemuIo(img, 'qcow2', ['write -P 0x31 0 1M', 'write -P 0x32 4M 64k']);
      const p = new Qcow2Patcher(img);
      const target = p.dataClusters()[8].offset;
      const last = p.dataClusters().at(-1)!;
      p.setL2Entry(last.l1Index, last.l2Index, COPIED | BigInt(target));
    },
  },
  {
    name: '1-bit refcounts: a cluster referenced first, then met again inside a run (overflow)',
    status: 2,
    make: (img) => {
      create(img, 'refcount_bits=1', '64M');
      qemuIo(img, 'qcow2', ['write -P 0x41 0 64k', 'write -P 0x42 4M 1M']);
      const p = new Qcow2Patcher(img);
      const first = p.dataClusters()[0];
      p.setL2Entry(first.l1Index, first.l2Index, COPIED | BigInt(p.dataClusters()[9].offset));
    },
  },
  {
    name: '1-bit refcounts: a compressed cluster inside a data cluster of a run (overflow)',
    status: 2,
    make: (img) => {
      create(img, 'refcount_bits=1', '64M');
      qemuIo(img, 'qcow2', ['write -P 0x35 0 1M', 'write -P 0x36 8M 64k']);
      const p = new Qcow2Patcher(img);
      const last = p.dataClusters().at(-1)!;
      // One sector of compressed data 100 bytes into the run's fourth cluster (64k clusters: offset bits 0-53).
      p.setL2Entry(last.l1Index, last.l2Index, (1n << 62n) | BigInt(p.dataClusters()[3].offset + 100));
    },
  },
  {
    name: 'OFLAG_COPIED cleared on one entry in the middle of a run',
    status: 2,
    make: (img) => {
      create(img, '', '64M');
      qemuIo(img, 'qcow2', ['write -P 0x51 0 4M']);
      const p = new Qcow2Patcher(img);
      const d = p.dataClusters()[30];
      p.setL2Entry(d.l1Index, d.l2Index, p.l2Entry(d.l1Index, d.l2Index) & ~COPIED);
    },
  },
  {
    name: 'the refcount of one cluster in the middle of a run raised to 2 (a leak, and COPIED now wrong)',
    status: 2,
    make: (img) => {
      create(img, '', '64M');
      qemuIo(img, 'qcow2', ['write -P 0x61 0 4M', 'write -P 0x62 8M 1M']);
      const p = new Qcow2Patcher(img);
      p.setRefcount(p.dataClusters()[40].offset / p.clusterSize, 2);
    },
  },
  {
    name: 'two L1 entries pointing at the same L2 table full of runs',
    status: 2,
    make: (img) => {
      create(img, '', '2G');
      qemuIo(img, 'qcow2', ['write -P 0x71 0 3M', 'write -P 0x72 100M 2M']);
      const p = new Qcow2Patcher(img);
      p.setL1Entry(2, p.l1Entry(0));
    },
  },
  {
    name: 'a run whose tail lies past the end of the file',
    status: 2,
    make: (img) => {
      create(img, '', '64M');
      qemuIo(img, 'qcow2', ['write -P 0x81 0 1M', 'write -P 0x82 8M 2M']);
      const p = new Qcow2Patcher(img);
      const last = p.dataClusters().at(-1)!;
      truncateSync(img, last.offset - 3 * p.clusterSize);
    },
  },
  {
    name: 'a run whose host clusters cross a 4 GiB boundary (the low word of the entries wraps)',
    status: 0,
    make: (img) => {
      create(img, '', '64M');
      qemuIo(img, 'qcow2', ['write -P 0x91 0 1M']);
      // Move the run's data so that it straddles 4 GiB in the (sparse) file: entries and refcounts follow.
      const p = new Qcow2Patcher(img);
      const run0 = p.dataClusters();
      const base = 2 ** 32 - 8 * p.clusterSize;
      run0.forEach((d, n) => {
        const to = base + n * p.clusterSize;
        p.write(to, p.read(d.offset, p.clusterSize));
        p.setL2Entry(d.l1Index, d.l2Index, COPIED | BigInt(to));
        p.setRefcount(d.offset / p.clusterSize, 0);
      });
      // The refcounts of the new places: qemu-img -r all builds the blocks they need.
      const q = run('qemu-img', ['check', '-r', 'all', img]);
      assert.ok(q.status === 0, `qemu-img check -r all: ${q.stdout}${q.stderr}`);
      assert.ok((p.l2Entry(run0[0].l1Index, run0[0].l2Index) & OFFSET) === BigInt(base));
    },
  },
  {
    name: 'a snapshot table of more than 64 KiB (220 snapshots sharing one L1 table), data after it',
    status: 0,
    make: (img) => {
      create(img, '', '64M');
      qemuIo(img, 'qcow2', ['write -P 0xa1 0 1M']);
      must('qemu-img', ['snapshot', '-c', 'one', img]);
      // Copies of that one snapshot (qemu-img keeps names to 255 bytes, and 220 runs of it take too long),
      // in a new table appended to the file, with the refcounts the copies call for.
      const p = new Qcow2Patcher(img);
      const oldTable = Number(p.u64(64));
      const fixed = p.read(oldTable, 40);
      const extra = p.read(oldTable + 40, fixed.readUInt32BE(36));
      const l1 = Number(fixed.readBigUInt64BE(0));
      const count = 220;
      const entries = Array.from({ length: count }, (_, n) => {
        const id = Buffer.from(String(n + 1));
        const name = Buffer.from(`copy-${n}-${'x'.repeat(240)}`);
        const e = Buffer.alloc(Math.ceil((40 + extra.length + id.length + name.length) / 8) * 8);
        fixed.copy(e, 0, 0, 40);
        e.writeUInt16BE(id.length, 12);
        e.writeUInt16BE(name.length, 14);
        extra.copy(e, 40);
        id.copy(e, 40 + extra.length);
        name.copy(e, 40 + extra.length + id.length);
        return e;
      });
      const table = Buffer.concat(entries);
      assert.ok(table.length > 64 * 1024);
      const at = Math.ceil(p.fileSize / p.clusterSize) * p.clusterSize;
      p.write(at, table);
      for (let c = at / p.clusterSize; c * p.clusterSize < at + table.length; c++) p.setRefcount(c, 1);
      p.setRefcount(oldTable / p.clusterSize, 0);
      p.setRefcount(l1 / p.clusterSize, count);
      p.setRefcount(p.l2Offset(0) / p.clusterSize, count + 1);
      for (const d of p.dataClusters()) p.setRefcount(d.offset / p.clusterSize, count + 1);
      const h = Buffer.alloc(12);
      h.writeUInt32BE(count, 0);
      h.writeBigUInt64BE(BigInt(at), 4);
      p.write(60, h);
      truncateSync(img, at + 4 * 1024 * 1024); // the file goes on past the table
    },
  },
];

describe('qcow2 check fast paths agree with qemu-img check', () => {
  scenarios.forEach((sc, n) => {
    test(sc.name, async () => {
      const img = s.path(`r${n}.qcow2`);
      sc.make(img);
      const q = run('qemu-img', ['check', '--output', 'json', img]);
      assert.equal(q.status, sc.status, `qemu-img's exit code (the damage is what the scenario says): ${q.stdout}${q.stderr}`);
      const ours = await checkQcow2(img, 'none');
      assert.equal(checkExitCode(ours), q.status, 'exit code');
      const mine = JSON.parse(checkJson({ ...ours, filename: 'x' })) as Record<string, unknown>;
      const theirs = JSON.parse(q.stdout) as Record<string, unknown>;
      delete mine.filename;
      delete theirs.filename;
      assert.deepEqual(mine, theirs, 'the JSON report');
      const qh = run('qemu-img', ['check', img]);
      assert.deepEqual(lines(checkText(ours)), lines(qh.stdout, qh.stderr), 'the messages');
    });
  });
});
