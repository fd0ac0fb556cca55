/**
 * The MBR (DOS) partition table: four primary slots at byte 446 of sector 0, an extended partition whose chain
 * of EBRs holds the logical partitions (numbered from 5, as Linux and sfdisk number them). The chain is
 * followed with a visited set and a limit, so a loop or an absurd chain ends with a finding, not a hang.
 */
import type { Finding, PartitionInfo } from '../types';
import type { Window } from '../source';

/** Type bytes of an extended partition (DOS, Windows LBA, Linux). */
const EXTENDED = new Set([0x05, 0x0f, 0x85]);
export const PROTECTIVE_TYPE = 0xee;
/** More logical partitions than any tool makes: a longer chain is damage (or a loop through fresh sectors). */
const MAX_LOGICAL = 256;

export interface MbrEntry {
  slot: number; // 0-3
  bootFlag: number;
  type: number;
  startLba: number;
  sectors: number;
}

/** True when sector 0 carries the 0x55AA signature that every MBR (and protective MBR) has. */
export function hasMbrSignature(sector0: Uint8Array): boolean {
  return sector0.length >= 512 && sector0[510] === 0x55 && sector0[511] === 0xaa;
}

/** The four slots of an MBR-style sector (empty slots left out). */
export function mbrEntries(sector: Uint8Array): MbrEntry[] {
  const v = new DataView(sector.buffer, sector.byteOffset, sector.byteLength);
  const out: MbrEntry[] = [];
  for (let slot = 0; slot < 4; slot++) {
    const at = 446 + slot * 16;
    const type = sector[at + 4];
    const startLba = v.getUint32(at + 8, true);
    const sectors = v.getUint32(at + 12, true);
    if (type === 0 || sectors === 0) continue;
    out.push({ slot, bootFlag: sector[at], type, startLba, sectors });
  }
  return out;
}

/** The disk id (bytes 440-443) as sfdisk prints it. */
export function mbrDiskId(sector0: Uint8Array): string {
  const id = new DataView(sector0.buffer, sector0.byteOffset, sector0.byteLength).getUint32(440, true);
  return '0x' + id.toString(16).padStart(8, '0');
}

/** Reads the partitions of an MBR disk, the logical ones included. */
export async function readMbr(disk: Window, sector0: Uint8Array, ss: number, findings: Finding[]): Promise<PartitionInfo[]> {
  const parts: PartitionInfo[] = [];
  const primaries = mbrEntries(sector0);
  for (const e of primaries) {
    if (e.bootFlag !== 0 && e.bootFlag !== 0x80) findings.push({ severity: 'warning', message: `MBR slot ${e.slot + 1}: boot flag 0x${e.bootFlag.toString(16)} is neither 0x00 nor 0x80` });
    parts.push({
      number: e.slot + 1,
      start: e.startLba * ss,
      size: e.sectors * ss,
      type: e.type.toString(16),
      bootable: e.bootFlag === 0x80,
      kind: EXTENDED.has(e.type) ? 'extended' : 'primary',
    });
  }
  const extended = primaries.filter((e) => EXTENDED.has(e.type));
  if (extended.length > 1) findings.push({ severity: 'warning', message: `the MBR has ${extended.length} extended partitions; only the first is followed` });
  if (extended.length) parts.push(...(await readLogical(disk, extended[0], ss, findings)));
  return parts;
}

async function readLogical(disk: Window, ext: MbrEntry, ss: number, findings: Finding[]): Promise<PartitionInfo[]> {
  const out: PartitionInfo[] = [];
  const extStart = ext.startLba;
  const extEnd = ext.startLba + ext.sectors;
  const seen = new Set<number>();
  let ebr = extStart;
  let number = 5;
  while (true) {
    if (seen.has(ebr)) {
      findings.push({ severity: 'error', message: `the chain of logical partitions loops back to sector ${ebr}; it was cut there` });
      break;
    }
    if (seen.size >= MAX_LOGICAL) {
      findings.push({ severity: 'error', message: `the chain of logical partitions is longer than ${MAX_LOGICAL}; it was cut there` });
      break;
    }
    seen.add(ebr);
    if ((ebr + 1) * ss > disk.size) {
      findings.push({ severity: 'error', message: `an extended boot record at sector ${ebr} lies past the end of the disk` });
      break;
    }
    const sector = await disk.bytes(ebr * ss, 512);
    if (!hasMbrSignature(sector)) {
      if (ebr !== extStart) findings.push({ severity: 'error', message: `the extended boot record at sector ${ebr} has no 0x55AA signature; the chain ends there` });
      break;
    }
    const entries = mbrEntries(sector);
    const data = entries.find((e) => !EXTENDED.has(e.type));
    const link = entries.find((e) => EXTENDED.has(e.type));
    if (data) {
      const start = ebr + data.startLba;
      if (start + data.sectors > extEnd) findings.push({ severity: 'warning', message: `logical partition ${number} reaches past the end of its extended partition` });
      out.push({ number, start: start * ss, size: data.sectors * ss, type: data.type.toString(16), bootable: data.bootFlag === 0x80, kind: 'logical' });
      number++;
    }
    if (!link) break;
    const next = extStart + link.startLba;
    if (next >= extEnd) {
      findings.push({ severity: 'error', message: `the link to the next logical partition (sector ${next}) lies outside the extended partition; the chain ends there` });
      break;
    }
    ebr = next;
  }
  return out;
}
