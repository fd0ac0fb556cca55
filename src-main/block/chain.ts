import type { BlockDevice } from './types';

/** The allocation state of a guest range after following the backing chain, as `map` reports it. */
export interface DeepExtent {
  kind: 'data' | 'zero' | 'unallocated';
  length: number;
  /** How many backing hops down the state was found (for unallocated: the depth of the last image). */
  depth: number;
  /** The image that holds the data, and where in it. */
  file: string;
  hostOffset?: number;
  /** Data that reads as zeros (see Extent.readsAsZero). */
  readsAsZero?: boolean;
}

/**
 * Status of [offset, offset+length) through the chain: a range unallocated in one image is looked up in its
 * backing image; a range past the end of a shorter backing image reads as zeros.
 */
export async function deepStatus(top: BlockDevice, offset: number, length: number): Promise<DeepExtent> {
  let dev = top;
  let depth = 0;
  let len = length;
  for (;;) {
    const ext = await dev.status(offset, len);
    len = Math.min(len, ext.length);
    if (ext.kind !== 'unallocated') {
      return { kind: ext.kind, length: len, depth, file: dev.path, ...(ext.hostOffset !== undefined ? { hostOffset: ext.hostOffset } : {}), ...(ext.readsAsZero ? { readsAsZero: true } : {}) };
    }
    const backing = dev.backing;
    // qemu-img map shows the host offset of an unallocated subcluster in an allocated cluster (extended L2).
    if (!backing || offset >= backing.size) return { kind: 'unallocated', length: len, depth, file: dev.path, ...(ext.hostOffset !== undefined ? { hostOffset: ext.hostOffset } : {}) };
    len = Math.min(len, backing.size - offset);
    dev = backing;
    depth++;
  }
}

/** The devices of a chain, top first. */
export function chainOf(top: BlockDevice): BlockDevice[] {
  const out: BlockDevice[] = [];
  for (let d: BlockDevice | undefined = top; d; d = d.backing) out.push(d);
  return out;
}

/**
 * True when every device of the chain takes overlapping calls safely, so callers may keep several reads (or
 * writes) under way: raw does positioned file I/O only, and qcow2 queues its mutations in call order while
 * its reads touch only caches. Other formats are given one call at a time.
 */
export function takesConcurrentCalls(top: BlockDevice): boolean {
  return chainOf(top).every((d) => d.format === 'raw' || d.format === 'qcow2');
}
