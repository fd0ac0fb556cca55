/**
 * `check` and `check -r all` on VHDX images qemu-img made and we damaged in known ways (a truncated file, a BAT
 * entry into the metadata region, a pending log) give qemu-img check's verdicts and exit codes; repairs replay
 * the log. Malformed regions, metadata and log entries give one plain line, never a stack trace.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { DiskError } from '../../src-main/block/errors';
import { checkVhdx } from '../../src-main/formats/vhdx/check';
import { openImage } from '../../src-main/registry';
import { dw, must, run, scratch, seededRandom } from '../helpers';
import {
  HEADER_SIZE,
  METADATA_GUID,
  REGION_TABLE1_OFFSET,
  REGION_TABLE2_OFFSET,
  REGION_TABLE_SIZE,
  parseHeader,
  parseRegionTable,
  serializeHeader,
  setChecksum,
} from '../../src-main/formats/vhdx/layout';
import { assertPlainError, batRegion, currentHeaderOffset, io, makePendingLog, MiB } from './vhdx-common';

const s = scratch('dw-vhdx-check-');
after(() => s.cleanup());

/** A 8 MiB image with 1 MiB blocks and two blocks written (at file offsets 8 and 9 MiB). */
function written(name: string): string {
  const p = s.path(name);
  must('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', 'block_size=1M', p, '8M']);
  io(p, ['write -P 1 0 1M', 'write -P 2 2M 512k']);
  return p;
}

function sameVerdict(p: string, label: string, repair = false): void {
  const args = repair ? ['check', '-r', 'all'] : ['check'];
  const qcopy = s.path('q-' + label.replace(/\W/g, '_') + '.vhdx');
  copyFileSync(p, qcopy);
  const q = run('qemu-img', [...args, qcopy]);
  const o = dw([...args, p]);
  assert.equal(o.status, q.status, `${label}: exit code ours ${o.status} (${o.stdout}${o.stderr}) vs qemu-img ${q.status} (${q.stdout}${q.stderr})`);
  if (!repair) {
    const qj = run('qemu-img', ['check', '--output', 'json', qcopy]);
    const oj = dw(['check', '--output', 'json', p]);
    if (qj.stdout.trim().startsWith('{')) {
      const a = JSON.parse(qj.stdout);
      const b = JSON.parse(oj.stdout);
      for (const k of ['check-errors', 'corruptions', 'leaks']) assert.equal(b[k] ?? 0, a[k] ?? 0, `${label}: ${k}`);
    }
  }
}

test('clean images: exit 0 like qemu-img check', () => {
  const p = written('clean.vhdx');
  sameVerdict(p, 'clean');
  sameVerdict(p, 'clean-r', true);
});

test('a truncated file: BAT entries past the end (start, and end only) are corruptions, exit 2', () => {
  const a = written('trunc-start.vhdx');
  truncateSync(a, 9 * MiB);
  sameVerdict(a, 'start past end');
  const b = written('trunc-end.vhdx');
  truncateSync(b, 9 * MiB + 4096);
  sameVerdict(b, 'end past end');
  const before = readFileSync(b);
  dw(['check', b]);
  assert.ok(readFileSync(b).equals(before), 'check without repair leaves the file alone');
});

test('a BAT entry pointing into the metadata region is a corruption, exit 2', () => {
  const p = written('into-meta.vhdx');
  const bytes = readFileSync(p);
  const meta = parseRegionTable(bytes.subarray(REGION_TABLE1_OFFSET, REGION_TABLE1_OFFSET + REGION_TABLE_SIZE), p, bytes.length).find((r) => r.guid === METADATA_GUID)!;
  const bat = batRegion(bytes, p);
  bytes.writeUInt32LE(((meta.fileOffset / MiB) * 2 ** 20 + 6) >>> 0, bat.fileOffset + 16);
  writeFileSync(p, bytes);
  sameVerdict(p, 'into metadata');
});

test('a pending log: check exits 1 like qemu-img (cannot open read-only); check -r all replays it, exit 0', () => {
  const p = s.path('pending.vhdx');
  must('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', 'block_size=1M', p, '4M']);
  makePendingLog(p, 'write -P 7 1M 64k');
  sameVerdict(p, 'pending');
  const json = JSON.parse(dw(['check', '--output', 'json', '-r', 'all', s.path('pending.vhdx')]).stdout);
  assert.equal(json['corruptions-fixed'], 1, 'the replay counts as one fixed corruption, as in qemu-img');
  assert.equal(run('qemu-img', ['check', p]).status, 0);
});

function damaged(name: string, damage: (b: Buffer, path: string) => void): string {
  const p = written(name);
  const b = readFileSync(p);
  damage(b, p);
  writeFileSync(p, b);
  return p;
}

test('malformed regions, metadata and log entries: one plain line, never a stack trace', () => {
  const cases: Array<[string, (b: Buffer, path: string) => void]> = [
    [
      'region past the end',
      (b) => {
        for (const at of [REGION_TABLE1_OFFSET, REGION_TABLE2_OFFSET]) {
          b.writeUInt32LE(0xfff, at + 16 + 24); // BAT length absurd (not MiB aligned)
          setChecksum(b.subarray(at, at + REGION_TABLE_SIZE), 4);
        }
      },
    ],
    [
      'metadata item outside its region',
      (b, path) => {
        const meta = parseRegionTable(b.subarray(REGION_TABLE1_OFFSET, REGION_TABLE1_OFFSET + REGION_TABLE_SIZE), path, b.length).find((r) => r.guid === METADATA_GUID)!;
        b.writeUInt32LE(0x7fffffff, meta.fileOffset + 32 + 16); // first item's offset
      },
    ],
    [
      'block size not a power of two',
      (b, path) => {
        const meta = parseRegionTable(b.subarray(REGION_TABLE1_OFFSET, REGION_TABLE1_OFFSET + REGION_TABLE_SIZE), path, b.length).find((r) => r.guid === METADATA_GUID)!;
        const off = b.readUInt32LE(meta.fileOffset + 32 + 16);
        b.writeUInt32LE(3 * MiB, meta.fileOffset + off);
      },
    ],
    [
      'log outside the file',
      (b, path) => {
        const h = currentHeaderOffset(b, path);
        const hdr = parseHeader(b.subarray(h, h + HEADER_SIZE), path)!;
        b.set(serializeHeader({ ...hdr, logOffset: 1024 * MiB }), h);
      },
    ],
    [
      'BAT entry with an unknown state',
      (b, path) => {
        b.writeUInt32LE(((8 * 2 ** 20) >>> 0) | 4, batRegion(b, path).fileOffset);
      },
    ],
  ];
  for (const [label, fn] of cases) {
    const p = damaged(`bad-${label.replace(/\W/g, '_')}.vhdx`, fn);
    for (const cmd of [['info'], ['convert', '-O', 'raw']]) {
      const args = [...cmd, p, ...(cmd[0] === 'convert' ? [s.path('out.raw')] : [])];
      const r = dw(args);
      if (label === 'BAT entry with an unknown state' && cmd[0] === 'info') {
        assert.equal(r.status, 0, 'info reads headers only');
        continue;
      }
      assertPlainError(args);
    }
  }
});

test('a log entry promising a longer file than there is (a truncated file) is refused, as qemu-img refuses to replay it', () => {
  const p = s.path('log-trunc.vhdx');
  must('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', 'block_size=1M', p, '4M']);
  makePendingLog(p, 'write -P 7 1M 64k');
  const b = readFileSync(p);
  // flushed_file_offset far beyond the file: the file was truncated after the entry was written.
  const entry = MiB;
  b.writeBigUInt64LE(BigInt(b.length + 64 * MiB), entry + 48);
  setChecksum(b.subarray(entry, entry + b.readUInt32LE(entry + 8)), 4);
  writeFileSync(p, b);
  assert.notEqual(run('qemu-img', ['check', '-r', 'all', p]).status, 0, 'qemu refuses to replay it');
  assertPlainError(['info', p], /truncated/);
  assert.equal(dw(['check', '-r', 'all', p]).status, 1);
});

test('seeded mutations of a pending log entry (checksum made right again): info, reads and check give results or DiskErrors only', async () => {
  const p = s.path('logfuzz.vhdx');
  must('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', 'block_size=1M', p, '4M']);
  makePendingLog(p, 'write -P 7 1M 64k');
  const pristine = readFileSync(p);
  const entryLen = pristine.readUInt32LE(MiB + 8);
  const rnd = seededRandom(0x109);
  const fields = [8, 12, 16, 24, 48, 56, 64, 64 + 8, 64 + 16, 64 + 24, 4096, 4096 + 4, 4096 + 4092];
  for (let i = 0; i < 60; i++) {
    const b = Buffer.from(pristine);
    const at = MiB + fields[Math.floor(rnd() * fields.length)] + (rnd() < 0.3 ? Math.floor(rnd() * 8) : 0);
    const v = [0, 0xff, 0x80, 1, Math.floor(rnd() * 256)][Math.floor(rnd() * 5)];
    for (let k = 0; k < 1 + Math.floor(rnd() * 8); k++) b[at + k] = v;
    if (rnd() < 0.8) setChecksum(b.subarray(MiB, MiB + Math.min(entryLen, MiB)), 4);
    writeFileSync(p, b);
    for (const readOnly of [true, false]) {
      try {
        const dev = await openImage(p, { readOnly, backingPolicy: 'none' });
        try {
          await dev.read(0, new Uint8Array(2 * MiB));
          await dev.status(0, dev.size);
        } finally {
          await dev.close();
        }
      } catch (err) {
        assert.ok(err instanceof DiskError, `mutation ${i} at ${at}: ${err instanceof Error ? err.stack : err}`);
      }
      writeFileSync(p, b);
    }
    // check reports what it finds (in-process: a CLI run per mutation would cost more than the rest of the test).
    const report = await checkVhdx(p, 'none');
    assert.ok(report['check-errors'] + report.corruptions === 0 || report.problems.length > 0, `mutation ${i}: a verdict without a message`);
  }
  // One run through the CLI: a damaged log gives a verdict, never a stack trace.
  const r = dw(['check', p]);
  assert.ok([0, 1, 2].includes(r.status), `check exit ${r.status}: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
});
