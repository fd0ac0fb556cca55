/**
 * ISO 9660: the primary volume descriptor at 32 KiB ("CD001"), its volume id as the label and, as blkid makes
 * it, a UUID from the modification date (else the creation date): YYYY-MM-DD-HH-MM-SS-cc.
 */
import type { Window } from '../../source';
import type { FileSystemInfo } from '../../types';

function dateUuid(d: Uint8Array): string | undefined {
  const s = new TextDecoder('latin1').decode(d.subarray(0, 16));
  if (!/^\d{16}$/.test(s) || /^0+$/.test(s)) return undefined;
  return `${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)}-${s.slice(8, 10)}-${s.slice(10, 12)}-${s.slice(12, 14)}-${s.slice(14, 16)}`;
}

export async function probeIso9660(win: Window): Promise<FileSystemInfo | undefined> {
  if (win.size < 32768 + 2048) return undefined;
  const d = await win.bytes(32768, 2048);
  if (d[0] !== 1 || new TextDecoder('latin1').decode(d.subarray(1, 6)) !== 'CD001') return undefined;
  const v = new DataView(d.buffer, d.byteOffset, d.byteLength);
  const label = new TextDecoder('latin1').decode(d.subarray(40, 72)).replace(/[ \0]+$/, '');
  const blockSize = v.getUint16(128, true) || 2048;
  const uuid = dateUuid(d.subarray(830, 847)) ?? dateUuid(d.subarray(813, 830));
  return { type: 'iso9660', ...(label ? { label } : {}), ...(uuid ? { uuid } : {}), size: v.getUint32(80, true) * blockSize, blockSize, flags: [] };
}
