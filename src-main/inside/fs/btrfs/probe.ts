/** Btrfs identified from its superblock at 64 KiB ("_BHRfS_M"): label, fsid as UUID, size, sector size, bytes used. */
import type { Window } from '../../source';
import type { FileSystemInfo } from '../../types';
import { latin1Label, uuidText } from '../reader';

const BTRFS_SUPER = 0x10000;

export async function probeBtrfs(win: Window): Promise<FileSystemInfo | undefined> {
  if (win.size < BTRFS_SUPER + 4096) return undefined;
  const b = await win.bytes(BTRFS_SUPER, 4096);
  if (new TextDecoder('latin1').decode(b.subarray(64, 72)) !== '_BHRfS_M') return undefined;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = (o: number) => Number(BigInt.asUintN(53, v.getBigUint64(o, true)));
  const label = latin1Label(b.subarray(299, 299 + 256), false);
  return { type: 'btrfs', ...(label ? { label } : {}), uuid: uuidText(b.subarray(32, 48)), size: n(112), blockSize: v.getUint32(144, true), used: n(120), flags: [] };
}
