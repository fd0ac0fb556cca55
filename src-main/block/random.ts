/**
 * Random bytes for names and ids (temporary file names, image UUIDs) without loading node:crypto: its first
 * require compiles a dozen of Node's internal modules (keys, pbkdf2, hash names, streams), about 10 ms of CPU,
 * more than the rest of a small convert's own work. /dev/urandom gives the same kernel randomness for one
 * open and read; where it cannot be read (not a Unix), node:crypto is loaded after all.
 */
import { closeSync, openSync, readSync } from 'node:fs';

export function randomBytesQuick(n: number): Buffer {
  const out = Buffer.alloc(n);
  try {
    const fd = openSync('/dev/urandom', 'r');
    try {
      let done = 0;
      while (done < n) {
        const got = readSync(fd, out, done, n - done, null);
        if (got <= 0) throw new Error('short read');
        done += got;
      }
    } finally {
      closeSync(fd);
    }
    return out;
  } catch {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('node:crypto') as typeof import('node:crypto')).randomBytes(n);
  }
}

/** A random (version 4, RFC 4122 variant) UUID in its usual text form, as crypto.randomUUID gives. */
export function randomUuidQuick(): string {
  const b = randomBytesQuick(16);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
