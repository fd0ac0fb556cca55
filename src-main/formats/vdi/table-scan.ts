/**
 * Walks over a block table (a Uint32Array, one entry a block) without a JavaScript loop over its unused
 * entries: stretches holding one value are compared with memcmp against a template of that value, 1 KiB at a
 * time, and only entries that differ are visited one by one. So the work and the memory of a scan follow the
 * blocks in use, not the disk's size: a loop over a 1 TiB image's 1 Mi entries costs a few milliseconds and
 * does not make V8 compile it (an optimizing compile costs megabytes of resident memory that stay).
 * The same code lives in parallels/table-scan.ts: a format folder imports no other's.
 */

/** Entries compared at once. */
const SPAN = 256;
const templates = new Map<number, Buffer>();

function templateOf(value: number): Buffer {
  let t = templates.get(value);
  if (!t) {
    t = Buffer.from(new Uint32Array(SPAN).fill(value).buffer);
    templates.set(value, t);
  }
  return t;
}

function bytesOf(table: Uint32Array): Uint8Array {
  return new Uint8Array(table.buffer, table.byteOffset, table.byteLength);
}

/** The first index in [from, to) whose entry is not `value` (`to` when there is none). */
export function endOfRun(table: Uint32Array, from: number, to: number, value: number): number {
  const bytes = bytesOf(table);
  const t = templateOf(value);
  let i = from;
  // Entry by entry up to a span boundary, then whole spans while they match, then entry by entry again.
  while (i < to && i % SPAN !== 0) {
    if (table[i] !== value) return i;
    i++;
  }
  while (i + SPAN <= to && t.compare(bytes, i * 4, (i + SPAN) * 4) === 0) i += SPAN;
  while (i < to && table[i] === value) i++;
  return i;
}

/** Calls `visit` for every entry that is not `unused`, in index order. */
export function forEachUsed(table: Uint32Array, unused: number, visit: (index: number, value: number) => void): void {
  for (let i = endOfRun(table, 0, table.length, unused); i < table.length; i = endOfRun(table, i + 1, table.length, unused)) visit(i, table[i]);
}
