/**
 * Runs of equal payload entries in a VHDX BAT, found by comparing a page's bytes with a template instead of
 * looking at each entry: a sparse image made by qemu-img holds its unwritten blocks as ZERO-state entries (a 1 TiB
 * image: 32,704 of them), its sector bitmap entries (one after every chunk of payload entries) as zeros. Asking
 * each block's status in turn cost a promise and objects per block (55 ms and 65 ms of garbage collection for a
 * 1 TiB convert), and the loop was compiled by V8 (megabytes that stay resident).
 *
 * The template holds the payload entry at every payload position and zeros at every bitmap position, one page
 * and one chunk long, so that any page's entries line up with it at their place in the chunk (their phase).
 */

const ENTRY = 8;
/** A mismatching stretch is halved until it is this short, then looked at entry by entry. */
const SHORT = 16;

const templates = new Map<string, Buffer>();

function templateOf(entry: Uint8Array, period: number, pageEntries: number): Buffer {
  const key = `${Buffer.from(entry).toString('hex')}/${period}/${pageEntries}`;
  let t = templates.get(key);
  if (!t) {
    t = Buffer.alloc((pageEntries + period) * ENTRY);
    for (let i = 0; i < pageEntries + period; i++) if (i % period !== period - 1) t.set(entry, i * ENTRY);
    templates.set(key, t);
  }
  return t;
}

/**
 * How many of the `n` entries at byte `at` of `page` hold `entry` at payload positions and zeros at sector
 * bitmap positions, counted from the first: the first entry is at `phase` in its chunk of `period` entries
 * (period - 1 payload entries, then the bitmap entry).
 */
export function leadingMatches(page: Uint8Array, at: number, n: number, phase: number, period: number, entry: Uint8Array): number {
  const pageEntries = Math.floor(page.length / ENTRY);
  const t = templateOf(entry, period, pageEntries);
  const bytes = Buffer.from(page.buffer, page.byteOffset, page.byteLength);
  const same = (from: number, count: number) => bytes.compare(t, (phase + from) * ENTRY, (phase + from + count) * ENTRY, at + from * ENTRY, at + (from + count) * ENTRY) === 0;
  if (same(0, n)) return n;
  // The first entry that differs lies in [i, i + count): halve the stretch, keeping the half that holds it.
  let i = 0;
  let count = n;
  while (count > SHORT) {
    const half = count >>> 1;
    if (same(i, half)) {
      i += half;
      count -= half;
    } else count = half;
  }
  while (i < n && same(i, 1)) i++;
  return i;
}
