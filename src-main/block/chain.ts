/**
 * Backing chains seen from the top image: the allocation state of a range through the whole chain (deepStatus,
 * for `map`), the chain as a list, the guard against loops and endless depth while a chain is opened
 * (ChainGuard), and readBelow, the one read through to a backing image (zeros past its end, or without one).
 */
import * as nodePath from 'node:path';
import { DiskError } from './errors';
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
  /** Data stored compressed (see Extent.compressed). */
  compressed?: boolean;
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
      return { kind: ext.kind, length: len, depth, file: dev.path, ...(ext.hostOffset !== undefined ? { hostOffset: ext.hostOffset } : {}), ...(ext.readsAsZero ? { readsAsZero: true } : {}), ...(ext.compressed ? { compressed: true } : {}) };
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

/** Most images one backing chain is followed through. */
export const MAX_CHAIN_DEPTH = 256;

/**
 * The guard every walk down a backing chain goes through (open, inspect): a file met twice is a loop and a
 * chain deeper than MAX_CHAIN_DEPTH is refused, both as damage to the image the walk started from.
 */
export class ChainGuard {
  private readonly seen: Set<string>;
  constructor(private readonly top: string) {
    this.seen = new Set([nodePath.resolve(top)]);
  }
  /** Records the next file of the chain; throws when it was met before or the chain grows too deep. */
  visit(path: string): void {
    const key = nodePath.resolve(path);
    if (this.seen.has(key)) throw new DiskError('ECORRUPT', `${this.top}: the backing chain loops back to ${path}`, this.top);
    this.seen.add(key);
    if (this.seen.size > MAX_CHAIN_DEPTH) throw new DiskError('ECORRUPT', `${this.top}: the backing chain is deeper than ${MAX_CHAIN_DEPTH} images`, this.top);
  }
}

/**
 * What an unallocated guest range reads in an image over `backing`: the backing image's data where it reaches,
 * zeros past its end (a shorter backing image) or everywhere without one. Every format with backing files
 * reads through this one helper.
 */
export async function readBelow(backing: BlockDevice | undefined, pos: number, into: Uint8Array): Promise<void> {
  const n = backing ? Math.max(0, Math.min(into.length, backing.size - pos)) : 0;
  if (n > 0) await backing!.read(pos, into.subarray(0, n));
  into.fill(0, n);
}
