/**
 * ext inodes and where their data lies: extent trees (ext4), the classic direct/indirect block map (ext2/3), and
 * inline data (in i_block and the "system.data" extended attribute in the inode's body). Every block number is
 * checked against the file system's size, and trees are walked with depth and count limits.
 */
import { DiskError } from '../../../block/errors';
import type { Window } from '../../source';
import type { FileRun } from '../reader';
import type { Superblock } from './superblock';

const EXTENTS_FL = 0x80000;
const INLINE_DATA_FL = 0x10000000;
const EXTENT_MAGIC = 0xf30a;
/** Unwritten (preallocated) extents have a length above this; they read as zeros. */
const EXT_INIT_MAX_LEN = 32768;
const MAX_DEPTH = 5;

export const S_IFMT = 0xf000;
export const S_IFDIR = 0x4000;
export const S_IFREG = 0x8000;
export const S_IFLNK = 0xa000;

export interface Inode {
  ino: number;
  mode: number;
  size: number;
  mtime: number;
  flags: number;
  /** The 60 bytes of i_block (extent root, block map or inline data). */
  block: Uint8Array;
  /** The whole on-disk inode (for in-body extended attributes). */
  raw: Uint8Array;
  /** 512-byte sectors the file occupies (0 for a fast symlink). */
  blocks512: number;
}

export function parseInode(ino: number, raw: Uint8Array): Inode {
  const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  return {
    ino,
    mode: v.getUint16(0, true),
    size: v.getUint32(4, true) + v.getUint32(108, true) * 2 ** 32,
    mtime: v.getUint32(16, true) * 1000,
    flags: v.getUint32(32, true),
    block: raw.subarray(40, 100),
    raw,
    blocks512: v.getUint32(28, true),
  };
}

/** The inline bytes of an inode with INLINE_DATA: i_block's 60 bytes, then the system.data attribute's value. */
export function inlineData(inode: Inode, inodeSize: number): Uint8Array {
  const extra = inodeSize > 128 ? new DataView(inode.raw.buffer, inode.raw.byteOffset).getUint16(128, true) : 0;
  const parts = [inode.block];
  const start = 128 + extra;
  if (start + 4 <= inode.raw.length) {
    const v = new DataView(inode.raw.buffer, inode.raw.byteOffset, inode.raw.byteLength);
    if (v.getUint32(start, true) === 0xea020000) {
      const base = start + 4;
      let at = base;
      while (at + 16 <= inode.raw.length && v.getUint32(at, true) !== 0) {
        const nameLen = inode.raw[at];
        const index = inode.raw[at + 1];
        const valueOffs = v.getUint16(at + 2, true);
        const valueSize = v.getUint32(at + 8, true);
        const name = new TextDecoder().decode(inode.raw.subarray(at + 16, at + 16 + nameLen));
        if (index === 7 && name === 'data' && base + valueOffs + valueSize <= inode.raw.length) {
          parts.push(inode.raw.subarray(base + valueOffs, base + valueOffs + valueSize));
          break;
        }
        at += (16 + nameLen + 3) & ~3;
      }
    }
  }
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    all.set(p, o);
    o += p.length;
  }
  return all.subarray(0, Math.min(all.length, inode.size));
}

export function isInline(inode: Inode): boolean {
  return (inode.flags & INLINE_DATA_FL) !== 0;
}

/** Where the inode's data lies, as runs over [0, size); unmapped parts are holes. Inline inodes have none (see inlineData). */
export async function inodeRuns(win: Window, sb: Superblock, inode: Inode): Promise<FileRun[]> {
  const bs = sb.blockSize;
  const fileBlocks = Math.ceil(inode.size / bs);
  const mapped: FileRun[] = [];
  const add = (logical: number, physical: number, count: number) => {
    if (logical >= fileBlocks || count <= 0) return;
    count = Math.min(count, fileBlocks - logical);
    if (physical < sb.firstDataBlock || physical + count > sb.blocksCount) throw new DiskError('ECORRUPT', `ext inode ${inode.ino}: its data (block ${physical}) lies outside the file system`);
    const last = mapped[mapped.length - 1];
    if (last && last.diskOffset !== null && last.fileOffset + last.length === logical * bs && last.diskOffset + last.length === physical * bs) last.length += count * bs;
    else mapped.push({ fileOffset: logical * bs, length: count * bs, diskOffset: physical * bs });
  };
  if (inode.flags & EXTENTS_FL) await walkExtents(win, sb, inode, inode.block, 0, add, { nodes: 0 });
  else await walkBlockMap(win, sb, inode, add);
  mapped.sort((a, b) => a.fileOffset - b.fileOffset);
  // Fill the holes and clip to the size.
  const out: FileRun[] = [];
  let pos = 0;
  for (const r of mapped) {
    if (r.fileOffset < pos) throw new DiskError('ECORRUPT', `ext inode ${inode.ino}: two extents map the same part of the file`);
    if (r.fileOffset > pos) out.push({ fileOffset: pos, length: r.fileOffset - pos, diskOffset: null });
    out.push(r);
    pos = r.fileOffset + r.length;
  }
  if (pos < inode.size) out.push({ fileOffset: pos, length: inode.size - pos, diskOffset: null });
  const lastRun = out[out.length - 1];
  if (lastRun && lastRun.fileOffset + lastRun.length > inode.size) lastRun.length = inode.size - lastRun.fileOffset;
  return out.filter((r) => r.length > 0);
}

type Add = (logical: number, physical: number, count: number) => void;

async function walkExtents(win: Window, sb: Superblock, inode: Inode, node: Uint8Array, level: number, add: Add, seen: { nodes: number }): Promise<void> {
  const v = new DataView(node.buffer, node.byteOffset, node.byteLength);
  if (v.getUint16(0, true) !== EXTENT_MAGIC) throw new DiskError('ECORRUPT', `ext inode ${inode.ino}: an extent tree node has no magic`);
  const entries = v.getUint16(2, true);
  const depth = v.getUint16(6, true);
  if (depth > MAX_DEPTH || level > MAX_DEPTH || 12 + entries * 12 > node.length) throw new DiskError('ECORRUPT', `ext inode ${inode.ino}: its extent tree is malformed`);
  if (++seen.nodes > 1 << 20) throw new DiskError('ECORRUPT', `ext inode ${inode.ino}: its extent tree is absurdly large`);
  for (let i = 0; i < entries; i++) {
    const at = 12 + i * 12;
    if (depth === 0) {
      const logical = v.getUint32(at, true);
      let len = v.getUint16(at + 4, true);
      const unwritten = len > EXT_INIT_MAX_LEN;
      if (unwritten) len -= EXT_INIT_MAX_LEN;
      const physical = v.getUint16(at + 6, true) * 2 ** 32 + v.getUint32(at + 8, true);
      if (!unwritten) add(logical, physical, len);
    } else {
      const child = v.getUint32(at + 4, true) + v.getUint16(at + 8, true) * 2 ** 32;
      if (child < sb.firstDataBlock || child >= sb.blocksCount) throw new DiskError('ECORRUPT', `ext inode ${inode.ino}: an extent index points outside the file system`);
      await walkExtents(win, sb, inode, await win.bytes(child * sb.blockSize, sb.blockSize), level + 1, add, seen);
    }
  }
}

async function walkBlockMap(win: Window, sb: Superblock, inode: Inode, add: Add): Promise<void> {
  const v = new DataView(inode.block.buffer, inode.block.byteOffset, 60);
  const per = sb.blockSize / 4;
  const fileBlocks = Math.ceil(inode.size / sb.blockSize);
  for (let i = 0; i < 12; i++) {
    const b = v.getUint32(i * 4, true);
    if (b) add(i, b, 1);
  }
  let logical = 12;
  for (let level = 1; level <= 3; level++) {
    const b = v.getUint32((11 + level) * 4, true);
    const span = per ** level;
    if (b && logical < fileBlocks) await walkIndirect(win, sb, inode, b, level, logical, add, fileBlocks);
    logical += span;
  }
}

async function walkIndirect(win: Window, sb: Superblock, inode: Inode, block: number, level: number, logical: number, add: Add, fileBlocks: number): Promise<void> {
  if (block < sb.firstDataBlock || block >= sb.blocksCount) throw new DiskError('ECORRUPT', `ext inode ${inode.ino}: an indirect block (${block}) lies outside the file system`);
  const buf = await win.bytes(block * sb.blockSize, sb.blockSize);
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const per = sb.blockSize / 4;
  const span = per ** (level - 1);
  for (let i = 0; i < per && logical + i * span < fileBlocks; i++) {
    const b = v.getUint32(i * 4, true);
    if (!b) continue;
    if (level === 1) add(logical + i, b, 1);
    else await walkIndirect(win, sb, inode, b, level - 1, logical + i * span, add, fileBlocks);
  }
}
