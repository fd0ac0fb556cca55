/**
 * Walks over a block table (a Uint32Array, one entry a block) without a JavaScript loop over its unused
 * entries: stretches holding one value are compared with memcmp against a template of that value, 64 KiB at
 * a time, a stretch that differs is halved down to 16 entries, and only entries that differ are visited one by
 * one. So the work and the memory of a scan follow the
 * blocks in use, not the disk's size: a loop over a 1 TiB image's 1 Mi entries costs a few milliseconds and
 * does not make V8 compile it (an optimizing compile costs megabytes of resident memory that stay).
 */

/** Entries compared at once: a 64 KiB template. */
const SPAN = 16384;
/** A mismatching stretch is halved until it is this short, then looked at entry by entry. */
const SHORT = 16;
/**
 * A question about fewer entries than this is answered entry by entry (a write asks about one or two, a status
 * query of a few MiB about 128 words). Each memcmp costs ~10 us while V8 still interprets Buffer#compare's
 * argument checks (a short-lived command's whole life): a rebase asking 1,528 such questions spent 32 ms in
 * them at 64, 3 ms looping at 256.
 */
const FEW = 256;
const templates = new Map<number, Buffer>();

function templateOf(value: number): Buffer {
  let t = templates.get(value);
  if (!t) {
    t = Buffer.from(new Uint32Array(SPAN).fill(value).buffer);
    templates.set(value, t);
  }
  return t;
}

/** The first index in [from, to) whose entry is not `value` (`to` when there is none). */
export function endOfRun(table: Uint32Array, from: number, to: number, value: number): number {
  if (to - from <= FEW) {
    let i = from;
    while (i < to && table[i] === value) i++;
    return i;
  }
  const bytes = new Uint8Array(table.buffer, table.byteOffset, table.byteLength);
  const t = templateOf(value);
  const same = (at: number, n: number) => t.compare(bytes, at * 4, (at + n) * 4, 0, n * 4) === 0;
  let i = from;
  while (i < to) {
    if (table[i] !== value) return i;
    let n = Math.min(SPAN, to - i);
    if (same(i, n)) {
      i += n;
      continue;
    }
    // The first entry that differs lies in [i, i + n): halve the stretch, keeping the half that holds it.
    while (n > SHORT) {
      const half = n >>> 1;
      if (same(i, half)) {
        i += half;
        n -= half;
      } else n = half;
    }
    while (table[i] === value) i++;
    return i;
  }
  return to;
}

/** Calls `visit` for every entry that is not `unused`, in index order. */
export function forEachUsed(table: Uint32Array, unused: number, visit: (index: number, value: number) => void): void {
  for (let i = endOfRun(table, 0, table.length, unused); i < table.length; i = endOfRun(table, i + 1, table.length, unused)) visit(i, table[i]);
}

/**
 * The last run of one value found in a table, kept so that the next questions inside it (convert asks a
 * device's status a gigabyte at a time: a thousand questions over a 1 TiB image's one run of unused entries)
 * cost no scan. The owner calls forget() after every change of the table.
 */
export class RunMemo {
  private from = 0;
  private end = 0;
  private value = -1; // no entry holds it: nothing known
  constructor(private readonly table: Uint32Array) {}

  /** endOfRun(table, at, to, value). */
  endOf(at: number, to: number, value: number): number {
    if (to - at <= FEW) return endOfRun(this.table, at, to, value);
    if (value !== this.value || at < this.from || at >= this.end) {
      this.from = at;
      this.end = endOfRun(this.table, at, this.table.length, value);
      this.value = value;
    }
    return Math.min(to, Math.max(at, this.end));
  }

  forget(): void {
    this.value = -1;
  }
}

/** True where a Uint32Array's bytes are little-endian (every host Node ships for but s390x). */
export const HOST_LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/**
 * A table of little-endian 32-bit entries on disk (a VDI block map, a Parallels BAT), read straight into a
 * Uint32Array's bytes, made into numbers in place: on a little-endian host its bytes already are, so a 1 TiB
 * image's table (1 Mi entries) costs its 4 MiB once, not a second time as bytes to parse. `hostLittleEndian` is a
 * parameter so that the byte-swapping path runs in the tests on a little-endian host too.
 */
export function uint32TableFromLittleEndian(table: Uint32Array, hostLittleEndian = HOST_LITTLE_ENDIAN): Uint32Array {
  if (hostLittleEndian) return table;
  const v = new DataView(table.buffer, table.byteOffset, table.byteLength);
  for (let i = 0; i < table.length; i++) table[i] = v.getUint32(i * 4, true);
  return table;
}
