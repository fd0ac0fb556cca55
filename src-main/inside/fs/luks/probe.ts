/** LUKS1 and LUKS2 headers: version, UUID (as text in the header) and, for LUKS2, the label. Nothing inside is readable without the key. */
import type { Window } from '../../source';
import type { FileSystemInfo } from '../../types';
import { latin1Label } from '../reader';

export async function probeLuks(win: Window): Promise<FileSystemInfo | undefined> {
  if (win.size < 592) return undefined;
  const b = await win.bytes(0, 592);
  if (!(b[0] === 0x4c && b[1] === 0x55 && b[2] === 0x4b && b[3] === 0x53 && b[4] === 0xba && b[5] === 0xbe)) return undefined;
  const version = (b[6] << 8) | b[7];
  const uuid = latin1Label(b.subarray(168, 208));
  const label = version === 2 ? latin1Label(b.subarray(24, 72)) : '';
  return { type: 'crypto_LUKS', version: String(version), ...(label ? { label } : {}), ...(uuid ? { uuid } : {}), size: win.size, flags: [] };
}
