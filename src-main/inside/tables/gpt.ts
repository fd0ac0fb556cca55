/**
 * GPT: the header at LBA 1 and its entry array, both CRC-32-checked, and the backup header at the disk's last
 * LBA with its own array. A damaged primary is read from the backup (and said so); a backup that is missing or
 * differs from the primary is reported. Every count and offset from a header is bounded before it is used.
 */
import { readGuid } from '../../block/bytes';
import { crc32 } from '../crc32';
import type { Window } from '../source';
import type { Finding, PartitionInfo } from '../types';

const SIGNATURE = 'EFI PART';
/** 128 entries of 128 bytes is what every tool writes; a few thousand is the most any layout needs. */
const MAX_ENTRIES = 16384;
const MAX_ARRAY_BYTES = 4 << 20;

export interface GptHeader {
  currentLba: number;
  backupLba: number;
  firstUsable: number;
  lastUsable: number;
  diskGuid: string;
  entriesLba: number;
  entryCount: number;
  entrySize: number;
  entriesCrc: number;
}

/** A header or the reason it cannot be used. */
type HeaderResult = { header: GptHeader; entries: Uint8Array } | { problem: string };

export function hasGptSignature(sector: Uint8Array): boolean {
  return new TextDecoder('latin1').decode(sector.subarray(0, 8)) === SIGNATURE;
}

const n64 = (v: DataView, at: number) => {
  const x = v.getBigUint64(at, true);
  return x > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(x);
};

/** Parses and checks the header at `lba` and its entry array. */
async function readHeader(disk: Window, lba: number, ss: number): Promise<HeaderResult> {
  if ((lba + 1) * ss > disk.size) return { problem: `it would lie at sector ${lba}, past the end of the disk` };
  const sec = await disk.bytes(lba * ss, ss);
  if (!hasGptSignature(sec)) return { problem: `there is no GPT signature at sector ${lba}` };
  const v = new DataView(sec.buffer, sec.byteOffset, sec.byteLength);
  const headerSize = v.getUint32(12, true);
  if (headerSize < 92 || headerSize > ss) return { problem: `its header size (${headerSize}) is impossible` };
  const stored = v.getUint32(16, true);
  const copy = sec.slice(0, headerSize);
  copy.fill(0, 16, 20);
  if (crc32(copy) !== stored) return { problem: `its header checksum does not match` };
  const header: GptHeader = {
    currentLba: n64(v, 24),
    backupLba: n64(v, 32),
    firstUsable: n64(v, 40),
    lastUsable: n64(v, 48),
    diskGuid: readGuid(sec, 56).toUpperCase(),
    entriesLba: n64(v, 72),
    entryCount: v.getUint32(80, true),
    entrySize: v.getUint32(84, true),
    entriesCrc: v.getUint32(88, true),
  };
  if (header.currentLba !== lba) return { problem: `it says it lies at sector ${header.currentLba}, not ${lba}` };
  if (header.entrySize < 128 || header.entrySize % 8 !== 0 || header.entrySize > 4096) return { problem: `its entry size (${header.entrySize}) is impossible` };
  if (header.entryCount > MAX_ENTRIES || header.entryCount * header.entrySize > MAX_ARRAY_BYTES) return { problem: `its entry count (${header.entryCount}) is absurd` };
  const arrayBytes = header.entryCount * header.entrySize;
  if (header.entriesLba * ss + arrayBytes > disk.size) return { problem: `its entry array lies past the end of the disk` };
  const entries = await disk.bytes(header.entriesLba * ss, arrayBytes);
  if (crc32(entries) !== header.entriesCrc) return { problem: `its partition entries' checksum does not match` };
  return { header, entries };
}

function parseEntries(h: GptHeader, entries: Uint8Array, ss: number, diskSize: number, findings: Finding[]): PartitionInfo[] {
  const v = new DataView(entries.buffer, entries.byteOffset, entries.byteLength);
  const out: PartitionInfo[] = [];
  for (let i = 0; i < h.entryCount; i++) {
    const at = i * h.entrySize;
    const type = readGuid(entries, at).toUpperCase();
    if (type === '00000000-0000-0000-0000-000000000000') continue;
    const first = n64(v, at + 32);
    const last = n64(v, at + 40);
    const number = i + 1;
    if (last < first) {
      findings.push({ severity: 'error', message: `GPT entry ${number}: its last sector (${last}) lies before its first (${first}); left out` });
      continue;
    }
    const nameBytes = entries.subarray(at + 56, at + Math.min(h.entrySize, 128));
    let name = new TextDecoder('utf-16le').decode(nameBytes);
    const nul = name.indexOf('\0');
    if (nul >= 0) name = name.slice(0, nul);
    const attrs = v.getBigUint64(at + 48, true);
    const start = first * ss;
    const size = (last - first + 1) * ss;
    if (first < h.firstUsable || last > h.lastUsable) findings.push({ severity: 'warning', message: `partition ${number} lies outside the GPT's usable sectors (${h.firstUsable}-${h.lastUsable})` });
    if (start + size > diskSize) findings.push({ severity: 'error', message: `partition ${number} reaches past the end of the disk` });
    // An empty name is left out, as sfdisk leaves it out.
    out.push({ number, start, size, type, ...(name ? { name } : {}), uuid: readGuid(entries, at + 16).toUpperCase(), bootable: (attrs & 4n) !== 0n });
  }
  return out;
}

export interface GptResult {
  diskGuid: string;
  partitions: PartitionInfo[];
  firstUsable: number;
  lastUsable: number;
}

/** Reads a GPT at sector size `ss`; undefined when neither header can be used (the reasons go to findings). */
export async function readGpt(disk: Window, ss: number, findings: Finding[]): Promise<GptResult | undefined> {
  const lastLba = Math.floor(disk.size / ss) - 1;
  const primary = await readHeader(disk, 1, ss);
  const backupAt = 'header' in primary && primary.header.backupLba <= lastLba ? primary.header.backupLba : lastLba;
  const backup = await readHeader(disk, backupAt, ss);
  let use: { header: GptHeader; entries: Uint8Array };
  if ('header' in primary) {
    use = primary;
    if (primary.header.backupLba !== lastLba) findings.push({ severity: 'warning', message: `the GPT's backup header is recorded at sector ${primary.header.backupLba}, not at the disk's last sector (${lastLba}): the disk was resized or the table was copied from another disk` });
    if (!('header' in backup)) findings.push({ severity: 'warning', message: `the backup GPT header is missing or damaged: ${backup.problem}` });
    else if (!sameTable(primary, backup)) findings.push({ severity: 'warning', message: 'the backup GPT differs from the primary' });
  } else if ('header' in backup) {
    use = backup;
    findings.push({ severity: 'error', message: `the primary GPT header is damaged (${primary.problem}); the table was read from the backup at sector ${backupAt}` });
  } else {
    findings.push({ severity: 'error', message: `a GPT signature was found but neither header can be used: the primary because ${primary.problem}, the backup because ${backup.problem}` });
    return undefined;
  }
  const partitions = parseEntries(use.header, use.entries, ss, disk.size, findings);
  return { diskGuid: use.header.diskGuid, partitions, firstUsable: use.header.firstUsable, lastUsable: use.header.lastUsable };
}

function sameTable(a: { header: GptHeader; entries: Uint8Array }, b: { header: GptHeader; entries: Uint8Array }): boolean {
  const ha = a.header;
  const hb = b.header;
  return ha.diskGuid === hb.diskGuid && ha.entriesCrc === hb.entriesCrc && ha.entryCount === hb.entryCount && ha.firstUsable === hb.firstUsable && ha.lastUsable === hb.lastUsable;
}
