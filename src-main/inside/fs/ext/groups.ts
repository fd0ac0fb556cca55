/**
 * ext group descriptors (where each group's bitmaps and inode table lie, its free counts and flags) and the free
 * block map built from the block bitmaps. A group marked BLOCK_UNINIT has no bitmap on disk: as libext2fs does,
 * its blocks are free except its superblock backup, descriptor blocks and any group's bitmaps and inode table
 * that lie inside it (flex_bg packs those of many groups together).
 */
import { DiskError } from '../../../block/errors';
import type { Window } from '../../source';
import type { ByteRange } from '../../types';
import { freeFromBitmap, mergeRanges } from '../reader';
import { INCOMPAT_META_BG, RO_COMPAT_BIGALLOC, RO_COMPAT_GDT_CSUM, RO_COMPAT_METADATA_CSUM, RO_COMPAT_SPARSE_SUPER, type Superblock } from './superblock';

const BG_BLOCK_UNINIT = 0x2;
const COMPAT_SPARSE_SUPER2 = 0x200;

export interface GroupDesc {
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: number;
  flags: number;
}

function isPower(n: number, base: number): boolean {
  let x = base;
  while (x < n) x *= base;
  return x === n;
}

/** True when group g carries a superblock backup (sparse_super: groups 0, 1 and powers of 3, 5, 7). */
export function groupHasSuper(sb: Superblock, g: number, backupBgs: [number, number]): boolean {
  if (g === 0) return true;
  if (sb.compat & COMPAT_SPARSE_SUPER2) return g === backupBgs[0] || g === backupBgs[1];
  if (!(sb.roCompat & RO_COMPAT_SPARSE_SUPER)) return true;
  return g === 1 || isPower(g, 3) || isPower(g, 5) || isPower(g, 7);
}

export class ExtGroups {
  readonly descs: GroupDesc[] = [];
  private readonly descsPerBlock: number;

  private constructor(
    private readonly win: Window,
    private readonly sb: Superblock,
    private readonly backupBgs: [number, number],
    private readonly reservedGdt: number,
  ) {
    this.descsPerBlock = sb.blockSize / sb.descSize;
  }

  static async read(win: Window, sb: Superblock, raw: Uint8Array): Promise<ExtGroups> {
    const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const g = new ExtGroups(win, sb, [v.getUint32(0x24c, true), v.getUint32(0x250, true)], v.getUint16(206, true));
    await g.load();
    return g;
  }

  private groupFirstBlock(g: number): number {
    return this.sb.firstDataBlock + g * this.sb.blocksPerGroup;
  }

  /** The block holding descriptor block `i`: after the superblock, or with meta_bg in the first group of its metagroup. */
  private descBlock(i: number): number {
    const sb = this.sb;
    // The descriptors follow the superblock's block: block 1 with 1 KiB blocks even when the first data block is 0
    // (bigalloc), as libext2fs places them.
    const superBlock = sb.firstDataBlock === 0 && sb.blockSize === 1024 ? 1 : sb.firstDataBlock;
    if (!(sb.incompat & INCOMPAT_META_BG) || i < sb.firstMetaBg) return superBlock + 1 + i;
    const g = i * this.descsPerBlock;
    return this.groupFirstBlock(g) + (groupHasSuper(sb, g, this.backupBgs) ? 1 : 0);
  }

  private async load(): Promise<void> {
    const { sb } = this;
    const blocks = Math.ceil(sb.groupCount / this.descsPerBlock);
    const is64 = sb.descSize >= 64;
    for (let i = 0; i < blocks; i++) {
      const block = await this.win.bytes(this.descBlock(i) * sb.blockSize, sb.blockSize);
      const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
      for (let j = 0; j < this.descsPerBlock && this.descs.length < sb.groupCount; j++) {
        const at = j * sb.descSize;
        const hi = (o: number) => (is64 ? v.getUint32(at + o, true) * 2 ** 32 : 0);
        this.descs.push({
          blockBitmap: v.getUint32(at, true) + hi(32),
          inodeBitmap: v.getUint32(at + 4, true) + hi(36),
          inodeTable: v.getUint32(at + 8, true) + hi(40),
          flags: v.getUint16(at + 18, true),
        });
      }
    }
    for (const [g, d] of this.descs.entries()) {
      for (const b of [d.blockBitmap, d.inodeBitmap, d.inodeTable]) {
        if (b < sb.firstDataBlock || b >= sb.blocksCount) throw new DiskError('ECORRUPT', `ext group ${g}: its bitmap or inode table (block ${b}) lies outside the file system`);
      }
    }
  }

  /** Blocks at the start of group g that its superblock backup and descriptor blocks take (libext2fs's ext2fs_super_and_bgd_loc2). */
  private superAndDescBlocks(g: number): number {
    const sb = this.sb;
    const metaBg = (sb.incompat & INCOMPAT_META_BG) !== 0;
    const descBlocks = Math.ceil(sb.groupCount / this.descsPerBlock);
    const oldDescBlocks = metaBg ? sb.firstMetaBg : descBlocks + this.reservedGdt;
    const hasSuper = groupHasSuper(sb, g, this.backupBgs);
    let n = hasSuper ? 1 : 0;
    const metaGroup = Math.floor(g / this.descsPerBlock);
    if (!metaBg || metaGroup < sb.firstMetaBg) {
      if (hasSuper) n += oldDescBlocks;
    } else {
      const r = g % this.descsPerBlock;
      if (r === 0 || r === 1 || r === this.descsPerBlock - 1) n++;
    }
    return n;
  }

  /** The free byte ranges of the volume, from the block bitmaps. */
  async freeRanges(): Promise<ByteRange[]> {
    const sb = this.sb;
    if (sb.roCompat & RO_COMPAT_BIGALLOC) throw new DiskError('EUNSUPPORTED', 'ext: the free-block map of a bigalloc file system is not read yet');
    const csum = (sb.roCompat & (RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM)) !== 0;
    const out: ByteRange[] = [];
    for (let g = 0; g < sb.groupCount; g++) {
      const first = this.groupFirstBlock(g);
      const count = Math.min(sb.blocksPerGroup, sb.blocksCount - first);
      let bitmap: Uint8Array;
      if (csum && this.descs[g].flags & BG_BLOCK_UNINIT) bitmap = this.uninitBitmap(g, first, count);
      else bitmap = await this.win.bytes(this.descs[g].blockBitmap * sb.blockSize, Math.ceil(count / 8));
      freeFromBitmap(bitmap, count, first, sb.blockSize, 0, out);
    }
    return mergeRanges(out);
  }

  private uninitBitmap(g: number, first: number, count: number): Uint8Array {
    const bm = new Uint8Array(Math.ceil(count / 8));
    const mark = (block: number, n: number) => {
      for (let b = Math.max(block, first); b < Math.min(block + n, first + count); b++) bm[(b - first) >> 3] |= 1 << ((b - first) & 7);
    };
    mark(first, this.superAndDescBlocks(g));
    const tableBlocks = Math.ceil((this.sb.inodesPerGroup * this.sb.inodeSize) / this.sb.blockSize);
    for (const d of this.descs) {
      mark(d.blockBitmap, 1);
      mark(d.inodeBitmap, 1);
      mark(d.inodeTable, tableBlocks);
    }
    return bm;
  }
}
