/** Linux swap identified by its signature at the end of the first page (pages of 4 to 64 KiB): version 1 header with UUID and label. */
import type { Window } from '../../source';
import type { FileSystemInfo } from '../../types';
import { latin1Label, uuidText } from '../reader';

export async function probeSwap(win: Window): Promise<FileSystemInfo | undefined> {
  for (const page of [4096, 8192, 16384, 65536]) {
    if (win.size < page) break;
    const sig = new TextDecoder('latin1').decode(await win.bytes(page - 10, 10));
    if (sig !== 'SWAPSPACE2' && sig !== 'SWAP-SPACE') continue;
    if (sig === 'SWAP-SPACE') return { type: 'swap', version: '0', size: win.size, blockSize: page, flags: [] };
    const h = await win.bytes(1024, 44);
    const v = new DataView(h.buffer, h.byteOffset, h.byteLength);
    const lastPage = v.getUint32(4, true);
    const label = latin1Label(h.subarray(28, 44));
    const uuid = uuidText(h.subarray(12, 28));
    return {
      type: 'swap',
      version: String(v.getUint32(0, true)),
      ...(label ? { label } : {}),
      ...(uuid !== '00000000-0000-0000-0000-000000000000' ? { uuid } : {}),
      size: Math.min(win.size, (lastPage + 1) * page),
      blockSize: page,
      flags: [],
    };
  }
  return undefined;
}
