/**
 * An LVM2 physical volume: the "LABELONE" label in one of the first four sectors, the PV header (its UUID,
 * printed as blkid does in 6-4-4-4-4-4-6 groups, and the device size) and the volume group's name, the first
 * word of the metadata text the first metadata area points at.
 */
import type { Window } from '../../source';
import type { FileSystemInfo } from '../../types';

const MDA_MAGIC = ' LVM2 x[5A%r0N*>';

export async function probeLvm(win: Window): Promise<FileSystemInfo | undefined> {
  if (win.size < 2048) return undefined;
  const head = await win.bytes(0, 2048);
  const latin = new TextDecoder('latin1');
  for (let s = 0; s < 4; s++) {
    const l = head.subarray(s * 512, s * 512 + 512);
    if (latin.decode(l.subarray(0, 8)) !== 'LABELONE' || latin.decode(l.subarray(24, 32)) !== 'LVM2 001') continue;
    const v = new DataView(l.buffer, l.byteOffset, l.byteLength);
    const pvAt = v.getUint32(20, true);
    if (pvAt < 32 || pvAt + 40 > 512) return undefined;
    const raw = latin.decode(l.subarray(pvAt, pvAt + 32));
    // blkid prints the 32 characters in groups of 6-4-4-4-4-4-6.
    const uuid = /^(.{6})(.{4})(.{4})(.{4})(.{4})(.{4})(.{6})$/s.exec(raw)?.slice(1).join('-') ?? raw;
    const devSize = Number(BigInt.asUintN(53, v.getBigUint64(pvAt + 32, true)));
    const info: FileSystemInfo = { type: 'LVM2_member', version: 'LVM2 001', uuid, size: devSize || win.size, flags: [] };
    // Data areas, then metadata areas: lists of (offset, size) pairs, each ended by a zero pair.
    let at = pvAt + 40;
    let list = 0;
    while (at + 16 <= 512 && list < 2) {
      const off = Number(BigInt.asUintN(53, v.getBigUint64(at, true)));
      const size = Number(BigInt.asUintN(53, v.getBigUint64(at + 8, true)));
      at += 16;
      if (off === 0) {
        list++;
        continue;
      }
      if (list === 1) {
        const vg = await vgName(win, off, size);
        if (vg) info.volumeGroup = vg;
        break;
      }
    }
    return info;
  }
  return undefined;
}

async function vgName(win: Window, mdaAt: number, mdaSize: number): Promise<string | undefined> {
  if (mdaAt + 512 > win.size || mdaSize < 512) return undefined;
  const h = await win.bytes(mdaAt, 512);
  if (new TextDecoder('latin1').decode(h.subarray(4, 20)) !== MDA_MAGIC) return undefined;
  const v = new DataView(h.buffer, h.byteOffset, h.byteLength);
  const off = Number(BigInt.asUintN(53, v.getBigUint64(40, true)));
  const size = Number(BigInt.asUintN(53, v.getBigUint64(48, true)));
  if (off === 0 || size === 0 || off + Math.min(size, 256) > mdaSize || mdaAt + off + 256 > win.size) return undefined;
  const text = new TextDecoder('latin1').decode(await win.bytes(mdaAt + off, Math.min(size, 256)));
  return /^\s*([A-Za-z0-9+_.-]+)\s*\{/.exec(text)?.[1];
}
