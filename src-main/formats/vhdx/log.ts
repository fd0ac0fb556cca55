/**
 * The VHDX metadata log: codecs of log entries (header, zero and data descriptors, data sectors), the search
 * for the active sequence that must be replayed, and the encoder of the entries our writes append. The log is a
 * circular buffer of 4 KiB sectors inside the file; an entry may wrap past its end. Pure: no I/O here.
 */
import { readGuid, view, writeGuid } from '../../block/bytes';
import { corrupt } from '../../block/errors';
import { checksumValid, setChecksum } from './layout';

export const LOG_SECTOR = 4096;
const ENTRY_HEADER_SIZE = 64;
const DESCRIPTOR_SIZE = 32;
const SIG_ENTRY = 0x65676f6c; // "loge"
const SIG_ZERO = 0x6f72657a; // "zero"
const SIG_DESC = 0x63736564; // "desc"
const SIG_DATA = 0x61746164; // "data"
/** How far past its end a log entry may say the file reaches (blocks allocated after the entry was written). */
const MAX_GROWTH = 16 * 1024 * 1048576;

/** A 64-bit field as a number, or NaN when it is beyond 2^53 (such an entry is not valid: no file is that large). */
function u64(v: DataView, at: number): number {
  const x = v.getBigUint64(at, true);
  return x > BigInt(Number.MAX_SAFE_INTEGER) ? NaN : Number(x);
}

/** One 4 KiB write an entry asks for: `data` (4096 bytes), or `zeroLength` bytes of zeros. */
export interface LogWrite {
  fileOffset: number;
  data?: Uint8Array;
  zeroLength?: number;
}

export interface LogEntry {
  /** Where the entry starts inside the log (bytes from the log's start). */
  position: number;
  length: number;
  tail: number;
  sequence: bigint;
  flushedFileOffset: number;
  lastFileOffset: number;
  writes: LogWrite[];
}

/** Sectors holding the 64-byte header and `count` descriptors (126 fit beside the header, 128 per sector after). */
export function descriptorSectors(count: number): number {
  return Math.ceil((count + 2) / 128);
}

/** The `length` bytes of the circular log `log` starting at `pos`, wrapping at its end. */
function circular(log: Uint8Array, pos: number, length: number): Uint8Array {
  if (pos + length <= log.length) return log.subarray(pos, pos + length);
  const out = new Uint8Array(length);
  const first = log.length - pos;
  out.set(log.subarray(pos), 0);
  out.set(log.subarray(0, length - first), first);
  return out;
}

/**
 * Decodes the entry at `pos` of the log, or returns undefined when it is not a valid entry of this log: wrong
 * signature, GUID or checksum, a length that is not whole sectors or exceeds the log, sequence number 0, a
 * descriptor or data sector whose sequence number differs from the entry's, or misaligned offsets (the spec's
 * rules: such an entry is simply not part of any sequence).
 */
export function parseLogEntry(log: Uint8Array, pos: number, logGuid: string, path: string): LogEntry | undefined {
  if (pos % LOG_SECTOR !== 0 || pos + ENTRY_HEADER_SIZE > log.length) return undefined;
  const h = view(log.subarray(pos, pos + ENTRY_HEADER_SIZE));
  if (h.getUint32(0, true) !== SIG_ENTRY) return undefined;
  const length = h.getUint32(8, true);
  const tail = h.getUint32(12, true);
  const sequence = h.getBigUint64(16, true);
  const count = h.getUint32(24, true);
  if (length === 0 || length % LOG_SECTOR !== 0 || length > log.length || sequence === 0n) return undefined;
  if (tail % LOG_SECTOR !== 0 || tail >= log.length) return undefined;
  if (readGuid(log, pos + 32) !== logGuid) return undefined;
  const descSectors = descriptorSectors(count);
  if (descSectors * LOG_SECTOR > length) return undefined;
  const entry = circular(log, pos, length);
  if (!checksumValid(entry, 4)) return undefined;
  const ev = view(entry);
  const writes: LogWrite[] = [];
  let dataSector = descSectors;
  for (let i = 0; i < count; i++) {
    const at = ENTRY_HEADER_SIZE + i * DESCRIPTOR_SIZE;
    const sig = ev.getUint32(at, true);
    if (ev.getBigUint64(at + 24, true) !== sequence) return undefined;
    const fileOffset = u64(ev, at + 16);
    if (!(fileOffset % LOG_SECTOR === 0)) return undefined;
    if (sig === SIG_ZERO) {
      const zeroLength = u64(ev, at + 8);
      if (!(zeroLength % LOG_SECTOR === 0)) return undefined;
      writes.push({ fileOffset, zeroLength });
    } else if (sig === SIG_DESC) {
      if ((dataSector + 1) * LOG_SECTOR > length) return undefined;
      const ds = entry.subarray(dataSector * LOG_SECTOR, (dataSector + 1) * LOG_SECTOR);
      const dv = view(ds);
      const seq = (BigInt(dv.getUint32(4, true)) << 32n) | BigInt(dv.getUint32(4092, true));
      if (dv.getUint32(0, true) !== SIG_DATA || seq !== sequence) return undefined;
      // The sector's first 8 and last 4 bytes live in the descriptor; the data sector holds the 4084 between.
      const data = new Uint8Array(LOG_SECTOR);
      data.set(entry.subarray(at + 8, at + 16), 0);
      data.set(ds.subarray(8, 4092), 8);
      data.set(entry.subarray(at + 4, at + 8), 4092);
      writes.push({ fileOffset, data });
      dataSector++;
    } else {
      return undefined;
    }
  }
  const lastFileOffset = u64(h, 56);
  const flushedFileOffset = u64(h, 48);
  if (Number.isNaN(lastFileOffset) || Number.isNaN(flushedFileOffset)) return undefined;
  // Every structure an entry writes lies inside the file size it names (the spec's LastFileOffset).
  if (writes.some((w) => w.fileOffset + (w.data ? w.data.length : w.zeroLength!) > Math.ceil(lastFileOffset / 1048576) * 1048576)) return undefined;
  return {
    position: pos,
    length,
    tail,
    sequence,
    flushedFileOffset,
    lastFileOffset,
    writes,
  };
}

/**
 * Finds the active sequence: the valid entry with the highest sequence number is the head; the entries to replay
 * run from the one its tail names up to the head, each following the previous one with the next sequence number.
 * When the tail does not lead to the head that way, the run of consecutive entries ending at the head is used (as
 * qemu does). An empty list means there is nothing to replay.
 */
export function activeSequence(log: Uint8Array, logGuid: string, path: string): LogEntry[] {
  const valid = new Map<number, LogEntry>();
  let head: LogEntry | undefined;
  for (let pos = 0; pos < log.length; pos += LOG_SECTOR) {
    const e = parseLogEntry(log, pos, logGuid, path);
    if (!e) continue;
    valid.set(pos, e);
    if (!head || e.sequence > head.sequence) head = e;
  }
  if (!head) return [];
  const next = (e: LogEntry) => valid.get((e.position + e.length) % log.length);
  // From the tail forward.
  const fromTail: LogEntry[] = [];
  let e = valid.get(head.tail);
  while (e && fromTail.length <= valid.size) {
    fromTail.push(e);
    if (e === head) return fromTail;
    const n = next(e);
    if (!n || n.sequence !== e.sequence + 1n) break;
    e = n;
  }
  // The run of consecutive entries ending at the head.
  const run: LogEntry[] = [head];
  for (;;) {
    const first = run[0];
    const prev = [...valid.values()].find((p) => p.sequence === first.sequence - 1n && next(p) === first);
    if (!prev || run.length > valid.size) break;
    run.unshift(prev);
  }
  return run;
}

/** Checks the entries against the file they are replayed into; a log promising a longer file means it was truncated. */
export function checkReplayable(entries: LogEntry[], fileSize: number, path: string): void {
  for (const e of entries) {
    // Replay grows the file to the size an entry names; a size far beyond the file is damage, not an image.
    if (e.lastFileOffset > fileSize + MAX_GROWTH) {
      throw corrupt(`${path}: the vhdx log names a file size (${e.lastFileOffset} bytes) far beyond the file's (${fileSize}); the log is damaged`, path);
    }
    if (e.flushedFileOffset > fileSize) {
      throw corrupt(`${path}: the vhdx log says the file was at least ${e.flushedFileOffset} bytes, but it has ${fileSize}; the file was truncated`, path);
    }
  }
}

/**
 * Encodes one entry holding whole 4 KiB sectors `writes` (each fileOffset 4 KiB aligned; data of 4096 bytes or
 * zeroLength a multiple of 4096), ready to be written at `position` of the log (the caller wraps it).
 */
export function encodeLogEntry(o: {
  logGuid: string;
  sequence: bigint;
  tail: number;
  flushedFileOffset: number;
  lastFileOffset: number;
  writes: LogWrite[];
}): Uint8Array {
  const dataCount = o.writes.filter((w) => w.data).length;
  const descSectors = descriptorSectors(o.writes.length);
  const buf = new Uint8Array((descSectors + dataCount) * LOG_SECTOR);
  const v = view(buf);
  v.setUint32(0, SIG_ENTRY, true);
  v.setUint32(8, buf.length, true);
  v.setUint32(12, o.tail, true);
  v.setBigUint64(16, o.sequence, true);
  v.setUint32(24, o.writes.length, true);
  writeGuid(buf, 32, o.logGuid);
  v.setBigUint64(48, BigInt(o.flushedFileOffset), true);
  v.setBigUint64(56, BigInt(o.lastFileOffset), true);
  let dataSector = descSectors;
  o.writes.forEach((w, i) => {
    const at = ENTRY_HEADER_SIZE + i * DESCRIPTOR_SIZE;
    v.setBigUint64(at + 16, BigInt(w.fileOffset), true);
    v.setBigUint64(at + 24, o.sequence, true);
    if (w.data) {
      v.setUint32(at, SIG_DESC, true);
      buf.set(w.data.subarray(4092, 4096), at + 4);
      buf.set(w.data.subarray(0, 8), at + 8);
      const ds = dataSector * LOG_SECTOR;
      v.setUint32(ds, SIG_DATA, true);
      v.setUint32(ds + 4, Number(o.sequence >> 32n), true);
      buf.set(w.data.subarray(8, 4092), ds + 8);
      v.setUint32(ds + 4092, Number(o.sequence & 0xffffffffn), true);
      dataSector++;
    } else {
      v.setUint32(at, SIG_ZERO, true);
      v.setBigUint64(at + 8, BigInt(w.zeroLength ?? 0), true);
    }
  });
  setChecksum(buf, 4);
  return buf;
}
