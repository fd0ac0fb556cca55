/** XFS identified from its superblock ("XFSB", big-endian): label, UUID, size, block size, used = (blocks - free) × block size. */
import type { Window } from '../../source';
import type { FileSystemInfo } from '../../types';
import { latin1Label, uuidText } from '../reader';

export async function probeXfs(win: Window): Promise<FileSystemInfo | undefined> {
  if (win.size < 512) return undefined;
  const b = await win.bytes(0, 512);
  if (new TextDecoder('latin1').decode(b.subarray(0, 4)) !== 'XFSB') return undefined;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const blockSize = v.getUint32(4, false);
  if (blockSize < 512 || blockSize > 65536 || (blockSize & (blockSize - 1)) !== 0) return undefined;
  const blocks = Number(BigInt.asUintN(53, v.getBigUint64(8, false)));
  const free = Number(BigInt.asUintN(53, v.getBigUint64(144, false)));
  const label = latin1Label(b.subarray(108, 120));
  const flags: string[] = [];
  // sb_inprogress: mkfs did not finish.
  if (b[126]) flags.push('mkfs did not finish');
  return { type: 'xfs', ...(label ? { label } : {}), uuid: uuidText(b.subarray(32, 48)), size: blocks * blockSize, blockSize, ...(free <= blocks ? { used: (blocks - free) * blockSize } : {}), flags };
}
