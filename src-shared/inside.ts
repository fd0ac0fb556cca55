/** The contract's shapes for what is inside a disk (issue 22: partitions, file systems, files) and for compaction. */

/** One partition of a compaction's figures. */
export interface SparsifyPartitionDto {
  /** sfdisk's number; 0 for a file system on the whole disk. */
  number: number;
  /** blkid's type word, '' for none. */
  type: string;
  /** 'mapped': its free space comes from its allocation map; 'kept': copied as it is (reason says why). */
  status: 'mapped' | 'kept';
  reason?: string;
  /** Bytes its file system marks free, and of those the bytes holding data in the image (what is given back). */
  freeBytes: number;
  reclaimBytes: number;
}

/** What a 'sparsify' job gives back: the figures (a preview's, or the run's), and the sizes on the host. */
export interface SparsifyResult {
  mode: 'new' | 'in-place' | 'dry-run';
  source: string;
  target?: string;
  format: string;
  virtualSize: number;
  table: 'gpt' | 'mbr' | null;
  partitions: SparsifyPartitionDto[];
  unpartitioned: { freeBytes: number; reclaimBytes: number };
  freeBytes: number;
  reclaimBytes: number;
  sizeBefore: number;
  sizeAfter?: number;
  notes: string[];
  /** A dry run's (preview's): why a compaction in place would refuse, in words ("a differencing VHD cannot release blocks: …"); absent when it can run. */
  inPlaceRefusal?: string;
  /** In place with keepCopy: the image as it was. */
  keptCopy?: string;
}

/** A plain-words observation about the disk: a damaged table read from its backup, a hybrid MBR, an overlap. */
export interface InsideFinding {
  severity: 'info' | 'warning' | 'error';
  message: string;
  /** A stable name for a finding a face says in its own words ('nothing-recognised': no table, no file system). */
  code?: 'nothing-recognised';
}

/** A file system as identified from its superblock, in blkid's words. */
export interface InsideFileSystem {
  /** blkid's TYPE word: ext4, vfat, ntfs, xfs, btrfs, swap, LVM2_member, crypto_LUKS, iso9660, exfat, or unknown. */
  type: string;
  label?: string;
  uuid?: string;
  size: number;
  blockSize?: number;
  used?: number;
  version?: string;
  flags?: string[];
  volumeGroup?: string;
  firstBytes?: string;
  /** diskwright can list and copy its files (ext2/3/4, FAT, NTFS). */
  browsable?: boolean;
}

export interface InsidePartition {
  /** As sfdisk numbers it (0: the whole disk holds one file system, no table). */
  number: number;
  start: number;
  size: number;
  /** GPT type GUID upper-case, or the MBR type byte in hex as sfdisk prints it. */
  type: string;
  name?: string;
  uuid?: string;
  bootable?: boolean;
  kind?: 'primary' | 'extended' | 'logical';
  filesystem?: InsideFileSystem;
}

export interface DiskLayout {
  table: 'gpt' | 'mbr' | null;
  sectorSize: number;
  size: number;
  id?: string;
  firstUsable?: number;
  lastUsable?: number;
  partitions: InsidePartition[];
  findings: InsideFinding[];
  /** With no partition table and no file system recognised: the disk's first bytes in hex (up to 32). */
  firstBytes?: string;
}

/** One entry of a folder inside the disk. Times are milliseconds since 1970 (UTC). */
export interface InsideEntry {
  name: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
  mtime?: number;
  mode?: number;
  /** A symlink's target text, shown, never followed. */
  target?: string;
}

export interface InsideListing {
  partition: number;
  /** The folder listed, absolute inside the file system ('/', '/etc'). */
  path: string;
  entries: InsideEntry[];
}

/** The map's "allocated in the image but free in the file system" layer. */
export interface InsideFreePicture {
  virtualSize: number;
  /** The same cut as mapPicture's for the same bucket count. */
  bucketSize: number;
  /** Per bucket: bytes the image itself holds (not a backing file) that the file systems mark free, or that no partition covers. */
  buckets: number[];
  /** Their sum. */
  bytes: number;
  /** Per partition: whether its free space was read ('mapped') or not, and why not. */
  partitions: Array<{ number: number; type: string; status: 'mapped' | 'kept'; reason?: string; freeBytes: number }>;
}

/** What an 'inside-copy' job gives back. */
export interface InsideCopyResult {
  target: string;
  files: number;
  bytes: number;
  /** Entries not copied (special files, names that cannot be files here), in plain words. */
  skipped: string[];
}
