/** A file's bytes, run by run, in pieces of at most 1 MiB: holes are not read, the caller sees only the data. */
import { throwIfAborted } from '../block/errors';
import type { FileData } from './fs/reader';
import type { ByteSource } from './source';

const PIECE = 1 << 20;

/** Calls `onData(fileOffset, bytes)` for every stored piece in file order; holes are skipped (they read as zeros). */
export async function readFileData(volume: ByteSource, data: FileData, onData: (fileOffset: number, bytes: Uint8Array) => Promise<void>, signal?: AbortSignal): Promise<void> {
  if (data.inline) {
    if (data.inline.length) await onData(0, data.inline.subarray(0, data.size));
    return;
  }
  const buf = new Uint8Array(PIECE);
  for (const r of data.runs) {
    if (r.diskOffset === null) continue;
    for (let done = 0; done < r.length; done += PIECE) {
      throwIfAborted(signal);
      const n = Math.min(PIECE, r.length - done);
      const piece = buf.subarray(0, n);
      await volume.read(r.diskOffset + done, piece);
      await onData(r.fileOffset + done, piece);
    }
  }
}
