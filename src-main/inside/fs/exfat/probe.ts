/**
 * exFAT identified as blkid does: the "EXFAT   " boot sector, the volume serial as XXXX-XXXX, the label from the
 * root directory's volume-label entry (0x83), and used space from the allocation bitmap entry (0x81).
 */
import type { Window } from '../../source';
import type { FileSystemInfo } from '../../types';
import { countSet } from '../reader';
import { fatUuid } from '../fat/boot';

export async function probeExfat(win: Window): Promise<FileSystemInfo | undefined> {
  if (win.size < 512) return undefined;
  const b = await win.bytes(0, 512);
  if (new TextDecoder('latin1').decode(b.subarray(3, 11)) !== 'EXFAT   ') return undefined;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const sectorShift = b[108];
  const clusterShift = b[109];
  if (sectorShift < 9 || sectorShift > 12 || clusterShift > 25 - sectorShift) return undefined;
  const ss = 2 ** sectorShift;
  const cs = ss * 2 ** clusterShift;
  const volumeSectors = Number(BigInt.asUintN(53, v.getBigUint64(72, true)));
  const fatOffset = v.getUint32(80, true) * ss;
  const heapOffset = v.getUint32(88, true) * ss;
  const clusterCount = v.getUint32(92, true);
  const rootCluster = v.getUint32(96, true);
  const info: FileSystemInfo = { type: 'exfat', uuid: fatUuid(v.getUint32(100, true)), size: volumeSectors * ss, blockSize: cs, flags: [], version: `${b[105]}.${b[104]}` };
  if ((v.getUint16(106, true) & 2) !== 0) info.flags!.push('not cleanly unmounted');
  // The root directory's first cluster holds the label and the bitmap entries (exFAT writes them first).
  const rootAt = heapOffset + (rootCluster - 2) * cs;
  if (rootCluster < 2 || rootCluster >= clusterCount + 2 || rootAt + cs > win.size || fatOffset >= heapOffset) return info;
  const root = await win.bytes(rootAt, Math.min(cs, 1 << 20));
  const rv = new DataView(root.buffer, root.byteOffset, root.byteLength);
  for (let at = 0; at + 32 <= root.length && root[at] !== 0; at += 32) {
    const type = root[at];
    if (type === 0x83) {
      const n = Math.min(root[at + 1], 11);
      info.label = new TextDecoder('utf-16le').decode(root.subarray(at + 2, at + 2 + n * 2));
    } else if (type === 0x81) {
      const first = rv.getUint32(at + 20, true);
      const len = Number(BigInt.asUintN(53, rv.getBigUint64(at + 24, true)));
      const bitmapAt = heapOffset + (first - 2) * cs;
      if (first >= 2 && len >= Math.ceil(clusterCount / 8) && len <= 64 << 20 && bitmapAt + len <= win.size) {
        info.used = countSet(await win.bytes(bitmapAt, Math.ceil(clusterCount / 8)), clusterCount) * cs;
      }
    }
  }
  return info;
}
