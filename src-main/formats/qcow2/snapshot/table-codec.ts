/**
 * The qcow2 snapshot table (docs/interop/qcow2.txt, "Snapshots"): the codec of its entries, and the one reader
 * of it, for info (driver.ts), snapshots (operations.ts) and check: one size limit (MAX_SNAPSHOT_TABLE_BYTES),
 * and never more than the file holds past the table's offset.
 */
import { u64 as readU64 } from '../../../block/bytes';
import { corrupt } from '../../../block/errors';
import type { ImageFile } from '../../../block/file';
import { MAX_L1_BYTES, type Qcow2Layout } from '../layout';

/** The largest snapshot table read (qemu's QCOW_MAX_SNAPSHOTS_SIZE: 1 KiB per entry on average). */
export const MAX_SNAPSHOT_TABLE_BYTES = 64 * 1024 * 1024;

function u64(view: DataView, off: number, path: string, what: string): number {
  return readU64(view, off, false, what, path);
}


export interface SnapshotTable {
  entries: SnapshotEntry[];
  /** Bytes the table takes in the file (each entry padded to 8 bytes). */
  byteLength: number;
}

/**
 * Reads and decodes the snapshot table. `forCheck`: an entry's unaligned L1 table or one past the end of the
 * file is left for the check to report (as qemu's check does) instead of refused here.
 */
export async function readSnapshotTable(file: ImageFile, layout: Qcow2Layout, forCheck = false): Promise<SnapshotTable> {
  const h = layout.header;
  if (h.nbSnapshots === 0) return { entries: [], byteLength: 0 };
  if (h.snapshotsOffset >= file.size) throw corrupt(`${file.path}: the snapshot table lies past the end of the file`, file.path);
  // Read what the entries take (from 64 KiB up), not all the file holds past the table (up to 64 MiB).
  const most = Math.min(file.size - h.snapshotsOffset, MAX_SNAPSHOT_TABLE_BYTES);
  let len = Math.min(most, 64 * 1024);
  let buf = await file.readBlock(h.snapshotsOffset, len, 'snapshot table');
  while (len < most && !holdsEntries(buf, h.nbSnapshots)) {
    len = Math.min(most, len * 8);
    buf = await file.readBlock(h.snapshotsOffset, len, 'snapshot table');
  }
  return forCheck
    ? parseSnapshotTable(buf, h.nbSnapshots, file.path, 1, Number.MAX_SAFE_INTEGER)
    : parseSnapshotTable(buf, h.nbSnapshots, file.path, layout.clusterSize, file.size);
}

/** Whether `buf` holds all `count` entries (or those before one parseSnapshotTable() refuses by its size). */
function holdsEntries(buf: Uint8Array, count: number): boolean {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let pos = 0;
  for (let i = 0; i < count; i++) {
    if (pos + SNAPSHOT_FIXED > buf.length) return false;
    const extraLen = v.getUint32(pos + 36);
    if (extraLen > 1024) return true;
    const end = pos + SNAPSHOT_FIXED + extraLen + v.getUint16(pos + 12) + v.getUint16(pos + 14);
    if (end > buf.length) return false;
    pos = Math.ceil(end / 8) * 8;
  }
  return true;
}

export interface SnapshotEntry {
  l1TableOffset: number;
  l1Size: number;
  id: string;
  name: string;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: bigint;
  vmStateSize: number;
  /** Virtual disk size when the snapshot was taken (extra data); undefined when absent. */
  diskSize?: number;
  icount?: bigint;
  /** The extra data as stored, kept intact beyond the fields we know. */
  extraData: Uint8Array;
}

const SNAPSHOT_FIXED = 40;

/** Parses the snapshot table. The buffer is bounded by the caller by the file length. */
export function parseSnapshotTable(buf: Uint8Array, count: number, path: string, clusterSize: number, fileSize: number): { entries: SnapshotEntry[]; byteLength: number } {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dec = new TextDecoder();
  const entries: SnapshotEntry[] = [];
  let pos = 0;
  for (let i = 0; i < count; i++) {
    if (pos + SNAPSHOT_FIXED > buf.length) throw corrupt(`${path}: snapshot table is truncated`, path);
    const l1TableOffset = u64(v, pos, path, 'snapshot L1 offset');
    const l1Size = v.getUint32(pos + 8);
    const idLen = v.getUint16(pos + 12);
    const nameLen = v.getUint16(pos + 14);
    const extraLen = v.getUint32(pos + 36);
    if (extraLen > 1024) throw corrupt(`${path}: snapshot ${i} has too much extra data (${extraLen} bytes)`, path);
    const end = pos + SNAPSHOT_FIXED + extraLen + idLen + nameLen;
    if (end > buf.length) throw corrupt(`${path}: snapshot table is truncated`, path);
    if (l1TableOffset % clusterSize !== 0) throw corrupt(`${path}: snapshot ${i} L1 table is not cluster aligned`, path);
    if (l1Size * 8 > MAX_L1_BYTES || l1TableOffset + l1Size * 8 > fileSize) throw corrupt(`${path}: snapshot ${i} L1 table lies past the end of the file`, path);
    const extra = buf.slice(pos + SNAPSHOT_FIXED, pos + SNAPSHOT_FIXED + extraLen);
    const ev = new DataView(extra.buffer);
    const e: SnapshotEntry = {
      l1TableOffset,
      l1Size,
      dateSec: v.getUint32(pos + 16),
      dateNsec: v.getUint32(pos + 20),
      vmClockNsec: v.getBigUint64(pos + 24),
      vmStateSize: v.getUint32(pos + 32),
      extraData: extra,
      id: dec.decode(buf.subarray(pos + SNAPSHOT_FIXED + extraLen, pos + SNAPSHOT_FIXED + extraLen + idLen)),
      name: dec.decode(buf.subarray(pos + SNAPSHOT_FIXED + extraLen + idLen, end)),
    };
    if (extraLen >= 8) e.vmStateSize = u64(ev, 0, path, 'snapshot VM state size');
    if (extraLen >= 16) e.diskSize = u64(ev, 8, path, 'snapshot disk size');
    if (extraLen >= 24) e.icount = ev.getBigUint64(16);
    entries.push(e);
    pos = Math.ceil(end / 8) * 8;
  }
  return { entries, byteLength: pos };
}

/** Encodes snapshot entries; v3 images always get extra data through the disk size (16 bytes). */
export function serializeSnapshotTable(entries: SnapshotEntry[], version: 2 | 3): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    const id = enc.encode(e.id);
    const name = enc.encode(e.name);
    let extra = e.extraData;
    const minExtra = version === 3 ? 16 : e.extraData.length;
    if (extra.length < minExtra || e.diskSize !== undefined) {
      const grown = new Uint8Array(Math.max(extra.length, minExtra, e.diskSize !== undefined ? 16 : 0));
      grown.set(extra);
      extra = grown;
    }
    const ev = new DataView(extra.buffer, extra.byteOffset, extra.byteLength);
    if (extra.length >= 8) ev.setBigUint64(0, BigInt(e.vmStateSize));
    if (extra.length >= 16 && e.diskSize !== undefined) ev.setBigUint64(8, BigInt(e.diskSize));
    const len = Math.ceil((SNAPSHOT_FIXED + extra.length + id.length + name.length) / 8) * 8;
    const buf = new Uint8Array(len);
    const v = new DataView(buf.buffer);
    v.setBigUint64(0, BigInt(e.l1TableOffset));
    v.setUint32(8, e.l1Size);
    v.setUint16(12, id.length);
    v.setUint16(14, name.length);
    v.setUint32(16, e.dateSec);
    v.setUint32(20, e.dateNsec);
    v.setBigUint64(24, e.vmClockNsec);
    v.setUint32(32, Math.min(e.vmStateSize, 0xffffffff));
    v.setUint32(36, extra.length);
    buf.set(extra, SNAPSHOT_FIXED);
    buf.set(id, SNAPSHOT_FIXED + extra.length);
    buf.set(name, SNAPSHOT_FIXED + extra.length + id.length);
    parts.push(buf);
  }
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}
