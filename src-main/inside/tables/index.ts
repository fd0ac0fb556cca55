/**
 * Which partition table a disk has (GPT at 512- or 4096-byte sectors, else MBR) and the checks that apply to
 * any table: overlaps, partitions past the end of the disk, a hybrid or missing protective MBR.
 */
import type { Window } from '../source';
import type { Finding, PartitionInfo } from '../types';
import { hasGptSignature, readGpt } from './gpt';
import { PROTECTIVE_TYPE, hasMbrSignature, mbrDiskId, mbrEntries, readMbr } from './mbr';

export interface TableResult {
  table: 'gpt' | 'mbr' | null;
  sectorSize: number;
  id?: string;
  firstUsable?: number;
  lastUsable?: number;
  partitions: PartitionInfo[];
}

/**
 * Reads the table. `sectorSize` is the format's logical sector size where it knows one (VHDX); otherwise a GPT
 * is looked for at 512 and 4096 bytes, and an MBR is taken in 512-byte sectors as sfdisk does for image files.
 */
export async function readTable(disk: Window, findings: Finding[], sectorSize?: number): Promise<TableResult> {
  const head = await disk.bytesPadded(0, 8192);
  const sector0 = head.subarray(0, 512);
  const sizes = sectorSize ? [sectorSize] : [512, 4096];
  // A primary header wiped whole (no signature left) is still a GPT when the backup at the disk's last sector
  // is one: looked for only behind a protective MBR or no MBR at all, as gdisk does.
  const mayHideGpt = !hasMbrSignature(sector0) || mbrEntries(sector0).some((e) => e.type === PROTECTIVE_TYPE);
  for (const ss of sizes) {
    if (!hasGptSignature(head.subarray(ss, ss + 8)) && !(mayHideGpt && (await backupSignature(disk, ss)))) continue;
    const gpt = await readGpt(disk, ss, findings);
    if (!gpt) break;
    if (!hasMbrSignature(sector0) || !mbrEntries(sector0).some((e) => e.type === PROTECTIVE_TYPE)) {
      findings.push({ severity: 'warning', message: 'the GPT has no protective MBR (a 0xEE entry); tools that know only MBR will see an empty disk' });
    } else if (mbrEntries(sector0).length > 1) {
      findings.push({ severity: 'info', message: `hybrid MBR: besides the protective entry, the MBR lists ${mbrEntries(sector0).length - 1} partition(s) of its own; the GPT is what is shown` });
    }
    checkPartitions(gpt.partitions, disk.size, findings);
    return { table: 'gpt', sectorSize: ss, id: gpt.diskGuid, firstUsable: gpt.firstUsable, lastUsable: gpt.lastUsable, partitions: gpt.partitions };
  }
  const entries = hasMbrSignature(sector0) ? mbrEntries(sector0) : [];
  if (entries.length && entries.every((e) => e.bootFlag === 0 || e.bootFlag === 0x80)) {
    const ss = sectorSize ?? 512;
    if (entries.some((e) => e.type === PROTECTIVE_TYPE)) findings.push({ severity: 'warning', message: 'the MBR is a protective one (0xEE) but no usable GPT was found behind it' });
    const partitions = await readMbr(disk, sector0, ss, findings);
    checkPartitions(partitions, disk.size, findings);
    return { table: 'mbr', sectorSize: ss, id: mbrDiskId(sector0), partitions };
  }
  return { table: null, sectorSize: sectorSize ?? 512, partitions: [] };
}

/** Whether the disk's last sector of size `ss` starts with a GPT header's signature. */
async function backupSignature(disk: Window, ss: number): Promise<boolean> {
  const last = Math.floor(disk.size / ss) - 1;
  if (last < 2) return false;
  return hasGptSignature(await disk.bytesPadded(last * ss, 8));
}

/** Overlaps and partitions past the end. An extended partition contains its logical ones and is left out of the overlap check. */
function checkPartitions(parts: PartitionInfo[], diskSize: number, findings: Finding[]): void {
  const MAX_PARTITIONS = 1024;
  if (parts.length > MAX_PARTITIONS) findings.push({ severity: 'warning', message: `${parts.length} partitions is an absurd count` });
  for (const p of parts) {
    if (p.start + p.size > diskSize && !findings.some((f) => f.message.startsWith(`partition ${p.number} reaches past`))) {
      findings.push({ severity: 'error', message: `partition ${p.number} reaches past the end of the disk (${p.start + p.size} > ${diskSize} bytes)` });
    }
  }
  const real = parts.filter((p) => p.kind !== 'extended').sort((a, b) => a.start - b.start);
  for (let i = 1; i < real.length && i < MAX_PARTITIONS; i++) {
    const a = real[i - 1];
    const b = real[i];
    if (b.start < a.start + a.size) findings.push({ severity: 'error', message: `partitions ${a.number} and ${b.number} overlap` });
  }
}
