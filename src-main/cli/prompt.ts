/**
 * The passphrase prompt of the command line: when standard input is a terminal and an encrypted image needs a
 * key that no --object secret gave, "Passphrase for IMAGE: " is written on stderr and the answer read in raw
 * mode, so that nothing is echoed. Backspace and Ctrl-U edit, Enter ends, Ctrl-C cancels the command (as
 * elsewhere: exit 130), Ctrl-D on an empty line gives up (the image's refusal stands). The typed bytes live in
 * one buffer that is wiped once the keyring holds its copy.
 */
import { DiskError } from '../block/errors';

/** Whether a person can be asked: stdin and stderr are terminals. */
export function canPrompt(): boolean {
  return process.stdin.isTTY === true && typeof process.stdin.setRawMode === 'function';
}

/** Reads one line without echo; undefined when the person gives up (Ctrl-D on an empty line or end of input). */
export function readHidden(question: string, signal?: AbortSignal): Promise<Uint8Array | undefined> {
  const stdin = process.stdin;
  let buf = Buffer.alloc(256);
  let len = 0;
  const wasRaw = stdin.isRaw;
  // Raw mode first, then the question: what is typed once the question shows is never echoed.
  stdin.setRawMode(true);
  process.stderr.write(question);
  stdin.resume();
  return new Promise((resolve, reject) => {
    const finish = (err: DiskError | undefined, give: boolean) => {
      stdin.off('data', onData);
      stdin.off('end', onEnd);
      signal?.removeEventListener('abort', onAbort);
      stdin.setRawMode(wasRaw);
      stdin.pause();
      process.stderr.write('\n');
      const answer = give ? Uint8Array.from(buf.subarray(0, len)) : undefined;
      buf.fill(0);
      if (err) reject(err);
      else resolve(answer);
    };
    const onEnd = () => finish(undefined, false);
    const onAbort = () => finish(new DiskError('ECANCELLED', 'cancelled at the passphrase prompt'), false);
    const onData = (chunk: Buffer) => {
      for (const byte of chunk) {
        if (byte === 0x0d || byte === 0x0a) return finish(undefined, true);
        if (byte === 0x03) return finish(new DiskError('ECANCELLED', 'cancelled at the passphrase prompt'), false);
        if (byte === 0x04) {
          if (len === 0) return finish(undefined, false);
          continue;
        }
        if (byte === 0x7f || byte === 0x08) {
          // Backspace: drop the last UTF-8 character (its continuation bytes are 10xxxxxx).
          while (len > 0 && (buf[--len] & 0xc0) === 0x80);
          continue;
        }
        if (byte === 0x15) {
          len = 0;
          continue;
        }
        if (len === buf.length) {
          const bigger = Buffer.alloc(buf.length * 2);
          buf.copy(bigger);
          buf.fill(0);
          buf = bigger;
        }
        buf[len++] = byte;
      }
      chunk.fill(0);
    };
    stdin.on('data', onData);
    stdin.on('end', onEnd);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort);
  });
}

/** The keyring's asker for the CLI: "Passphrase for IMAGE: ", and after a wrong one says so first. */
export async function askPassphrase(path: string, attempt: number, signal?: AbortSignal): Promise<Uint8Array | undefined> {
  return readHidden(`${attempt > 1 ? 'No key slot opened with that passphrase; try again.\n' : ''}Passphrase for ${path}: `, signal);
}

/** A new image's passphrase, typed twice (create or convert to an encrypted target without encrypt.key-secret). */
export async function askNewPassphrase(path: string): Promise<Uint8Array | undefined> {
  const first = await readHidden(`Passphrase for the new image ${path}: `);
  if (!first?.length) return undefined;
  const again = await readHidden('Type it again: ');
  const same = again !== undefined && again.length === first.length && again.every((b, i) => b === first[i]);
  again?.fill(0);
  if (!same) {
    first.fill(0);
    throw new DiskError('EINVAL', 'the two passphrases differ; nothing was created');
  }
  return first;
}
