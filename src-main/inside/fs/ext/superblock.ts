/**
 * The ext2/3/4 superblock (1024 bytes at byte 1024 of the volume) and its identification as blkid does it:
 * ext4 when a feature beyond ext3's is set, ext3 with a journal, else ext2.
 */
import type { Window } from '../../source';
import type { FileSystemInfo } from '../../types';
import { latin1Label, uuidText } from '../reader';

const MAGIC = 0xef53;
const COMPAT_HAS_JOURNAL = 0x4;
const INCOMPAT_RECOVER = 0x4;
export const INCOMPAT_META_BG = 0x10;
export const INCOMPAT_64BIT = 0x80;
export const RO_COMPAT_SPARSE_SUPER = 0x1;
export const RO_COMPAT_GDT_CSUM = 0x10;
export const RO_COMPAT_BIGALLOC = 0x200;
export const RO_COMPAT_METADATA_CSUM = 0x400;
/** blkid's EXT3_FEATURE_*_SUPP: anything beyond these makes the file system ext4. */
const EXT3_RO_SUPP = 0x7;
const EXT3_INCOMPAT_SUPP = 0x16;

export interface Superblock {
  inodesCount: number;
  blocksCount: number;
  freeBlocks: number;
  firstDataBlock: number;
  blockSize: number;
  blocksPerGroup: number;
  inodesPerGroup: number;
  state: number;
  revLevel: number;
  inodeSize: number;
  compat: number;
  incompat: number;
  roCompat: number;
  uuid: string;
  label: string;
  descSize: number;
  firstMetaBg: number;
  groupCount: number;
}

/** Parses the superblock; undefined when the magic is not there, a plain reason when it is but cannot be right. */
export function parseSuperblock(sb: Uint8Array, volumeSize: number): Superblock | string | undefined {
  const v = new DataView(sb.buffer, sb.byteOffset, sb.byteLength);
  if (v.getUint16(56, true) !== MAGIC) return undefined;
  const logBlock = v.getUint32(24, true);
  if (logBlock > 6) return `its block size (2^${10 + logBlock}) is impossible`;
  const blockSize = 1024 << logBlock;
  const incompat = v.getUint32(96, true);
  const is64 = (incompat & INCOMPAT_64BIT) !== 0;
  const blocksCount = v.getUint32(4, true) + (is64 ? v.getUint32(336, true) * 2 ** 32 : 0);
  const freeBlocks = v.getUint32(12, true) + (is64 ? v.getUint32(344, true) * 2 ** 32 : 0);
  const blocksPerGroup = v.getUint32(32, true);
  const inodesPerGroup = v.getUint32(40, true);
  const firstDataBlock = v.getUint32(20, true);
  const revLevel = v.getUint32(76, true);
  const inodeSize = revLevel === 0 ? 128 : v.getUint16(88, true);
  const descSize = is64 ? v.getUint16(254, true) : 32;
  // A group's bitmap is one block: it maps blocks, or with bigalloc clusters of several blocks.
  const roCompat = v.getUint32(100, true);
  const perBitmap = roCompat & RO_COMPAT_BIGALLOC ? v.getUint32(36, true) : blocksPerGroup;
  if (blocksPerGroup === 0 || perBitmap === 0 || perBitmap > blockSize * 8) return `its blocks per group (${blocksPerGroup}) is impossible`;
  if (inodesPerGroup === 0 || inodesPerGroup > blockSize * 8) return `its inodes per group (${inodesPerGroup}) is impossible`;
  if (inodeSize < 128 || inodeSize > blockSize || (inodeSize & (inodeSize - 1)) !== 0) return `its inode size (${inodeSize}) is impossible`;
  if (descSize < 32 || descSize > 1024 || (descSize & (descSize - 1)) !== 0) return `its group descriptor size (${descSize}) is impossible`;
  if (blocksCount <= firstDataBlock || freeBlocks > blocksCount) return `its block counts (${blocksCount} blocks, ${freeBlocks} free) are impossible`;
  if (blocksCount * blockSize > volumeSize) return `it claims ${blocksCount * blockSize} bytes but its volume holds ${volumeSize}`;
  return {
    inodesCount: v.getUint32(0, true),
    blocksCount,
    freeBlocks,
    firstDataBlock,
    blockSize,
    blocksPerGroup,
    inodesPerGroup,
    state: v.getUint16(58, true),
    revLevel,
    inodeSize,
    compat: v.getUint32(92, true),
    incompat,
    roCompat,
    uuid: uuidText(sb.subarray(104, 120)),
    label: latin1Label(sb.subarray(120, 136), false),
    descSize,
    firstMetaBg: v.getUint32(260, true),
    groupCount: Math.ceil((blocksCount - firstDataBlock) / blocksPerGroup),
  };
}

function extType(sb: Superblock): 'ext2' | 'ext3' | 'ext4' {
  if (sb.roCompat & ~EXT3_RO_SUPP || sb.incompat & ~EXT3_INCOMPAT_SUPP) return 'ext4';
  return sb.compat & COMPAT_HAS_JOURNAL ? 'ext3' : 'ext2';
}

export function extInfo(sb: Superblock): FileSystemInfo {
  const flags: string[] = [];
  if ((sb.state & 1) === 0) flags.push('not cleanly unmounted');
  if (sb.state & 2) flags.push('errors detected');
  if (sb.incompat & INCOMPAT_RECOVER) flags.push('journal needs recovery');
  return {
    type: extType(sb),
    ...(sb.label ? { label: sb.label } : {}),
    uuid: sb.uuid,
    size: sb.blocksCount * sb.blockSize,
    blockSize: sb.blockSize,
    used: (sb.blocksCount - sb.freeBlocks) * sb.blockSize,
    flags,
    browsable: true,
  };
}

export async function probeExt(win: Window): Promise<Superblock | string | undefined> {
  if (win.size < 2048) return undefined;
  return parseSuperblock(await win.bytes(1024, 1024), win.size);
}
