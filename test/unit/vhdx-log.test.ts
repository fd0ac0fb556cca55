import { test } from 'node:test';
import assert from 'node:assert/strict';
import { activeSequence, descriptorSectors, encodeLogEntry, LOG_SECTOR, parseLogEntry, type LogWrite } from '../../src-main/formats/vhdx/log';
import { bitmapBatIndex, chunkRatio, parseBatEntry, payloadBatIndex, serializeBatEntry } from '../../src-main/formats/vhdx/layout';

const GUID = '11223344-5566-7788-99aa-bbccddeeff00';
const OTHER = '00000000-1111-2222-3333-444444444444';
const MiB = 1024 * 1024;

function sector(fill: number): Uint8Array {
  const b = new Uint8Array(LOG_SECTOR).fill(fill);
  b[0] = 0xa0; // the first 8 and last 4 bytes travel in the descriptor: make them distinct
  b[4095] = 0x0b;
  return b;
}

function entry(seq: number, tail: number, writes: LogWrite[], guid = GUID): Uint8Array {
  return encodeLogEntry({ logGuid: guid, sequence: BigInt(seq), tail, flushedFileOffset: 8 * MiB, lastFileOffset: 9 * MiB, writes });
}

test('descriptor sectors: 126 descriptors fit beside the header, 128 in each further sector', () => {
  assert.equal(descriptorSectors(0), 1);
  assert.equal(descriptorSectors(126), 1);
  assert.equal(descriptorSectors(127), 2);
  assert.equal(descriptorSectors(254), 2);
  assert.equal(descriptorSectors(255), 3);
});

test('a log entry round trip: data and zero descriptors, the split sector bytes, file offsets', () => {
  const log = new Uint8Array(MiB);
  const writes: LogWrite[] = [{ fileOffset: 3 * MiB, data: sector(0x42) }, { fileOffset: 5 * MiB, zeroLength: 8192 }, { fileOffset: 3 * MiB + 4096, data: sector(0x43) }];
  const e = entry(7, 0, writes);
  assert.equal(e.length, 3 * LOG_SECTOR);
  log.set(e, 0);
  const got = parseLogEntry(log, 0, GUID, 't')!;
  assert.ok(got);
  assert.equal(got.sequence, 7n);
  assert.equal(got.flushedFileOffset, 8 * MiB);
  assert.equal(got.lastFileOffset, 9 * MiB);
  assert.deepEqual(got.writes.map((w) => w.fileOffset), [3 * MiB, 5 * MiB, 3 * MiB + 4096]);
  assert.deepEqual(got.writes[0].data, writes[0].data);
  assert.equal(got.writes[1].zeroLength, 8192);
  assert.deepEqual(got.writes[2].data, writes[2].data);
  // Another GUID, a flipped bit anywhere, or a descriptor whose sequence number differs: not an entry.
  assert.equal(parseLogEntry(log, 0, OTHER, 't'), undefined);
  for (const at of [20, 64 + 5, LOG_SECTOR + 100, 2 * LOG_SECTOR + 4092]) {
    const bad = log.slice();
    bad[at] ^= 1;
    assert.equal(parseLogEntry(bad, 0, GUID, 't'), undefined, `bit flipped at ${at}`);
  }
});

test('an entry that wraps past the end of the log is read across the wrap', () => {
  const log = new Uint8Array(4 * LOG_SECTOR);
  const e = entry(3, 3 * LOG_SECTOR, [{ fileOffset: MiB, data: sector(9) }, { fileOffset: 2 * MiB, data: sector(8) }]);
  log.set(e.subarray(0, LOG_SECTOR), 3 * LOG_SECTOR);
  log.set(e.subarray(LOG_SECTOR), 0);
  const got = parseLogEntry(log, 3 * LOG_SECTOR, GUID, 't')!;
  assert.ok(got);
  assert.deepEqual(got.writes[1].data, sector(8));
  assert.deepEqual(activeSequence(log, GUID, 't').map((x) => x.sequence), [3n]);
});

test('the active sequence: from the head\'s tail to the head; older, foreign and broken entries are left out', () => {
  const log = new Uint8Array(16 * LOG_SECTOR);
  const put = (pos: number, e: Uint8Array) => log.set(e, pos * LOG_SECTOR);
  put(0, entry(4, 0, [{ fileOffset: MiB, data: sector(1) }])); // 2 sectors: 0-1
  put(2, entry(5, 0, [{ fileOffset: MiB, data: sector(2) }])); // 2-3, tail at the first
  put(4, entry(6, 0, [{ fileOffset: MiB, data: sector(3) }])); // 4-5
  put(8, entry(9, 8 * LOG_SECTOR, [{ fileOffset: MiB, data: sector(4) }], OTHER)); // another session's
  assert.deepEqual(activeSequence(log, GUID, 't').map((x) => x.sequence), [4n, 5n, 6n]);
  // A head whose tail is itself: only it is replayed (everything before was in place already).
  put(6, entry(7, 6 * LOG_SECTOR, [{ fileOffset: MiB, data: sector(5) }]));
  assert.deepEqual(activeSequence(log, GUID, 't').map((x) => x.sequence), [7n]);
  // A torn newest entry (bad checksum) is not part of the sequence: the one before it is the head.
  const torn = entry(8, 8 * LOG_SECTOR, [{ fileOffset: MiB, data: sector(6) }]);
  torn[LOG_SECTOR + 10] ^= 0xff;
  put(8, torn);
  assert.deepEqual(activeSequence(log, GUID, 't').map((x) => x.sequence), [7n]);
  assert.deepEqual(activeSequence(new Uint8Array(4 * LOG_SECTOR), GUID, 't'), []);
});

test('BAT entries: state in bits 0-2, offset in MiB from bit 20; payload and bitmap indexes interleave by chunk', () => {
  const b = new Uint8Array(16);
  serializeBatEntry({ state: 6, offset: 5 * MiB }, b, 8);
  assert.deepEqual(Array.from(b.subarray(8)), [0x06, 0x00, 0x50, 0x00, 0, 0, 0, 0]);
  assert.deepEqual(parseBatEntry(b, 8), { state: 6, offset: 5 * MiB });
  serializeBatEntry({ state: 7, offset: 2 ** 40 }, b, 0); // 1 TiB: the MiB count crosses into the high word
  assert.deepEqual(parseBatEntry(b, 0), { state: 7, offset: 2 ** 40 });
  assert.equal(chunkRatio(MiB, 512), 4096);
  assert.equal(chunkRatio(32 * MiB, 4096), 1024);
  assert.equal(payloadBatIndex(4095, 4096), 4095);
  assert.equal(payloadBatIndex(4096, 4096), 4097);
  assert.equal(bitmapBatIndex(0, 4096), 4096);
  assert.equal(bitmapBatIndex(1, 4096), 8193);
});
