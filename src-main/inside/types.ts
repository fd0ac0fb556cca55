/**
 * What the "inside the disk" readers report: partition tables, file systems and their files. Plain JSON-safe
 * objects (numbers, strings, booleans, arrays), so that they can move to src-shared as DTOs unchanged.
 */

/** A plain-words observation about the disk: a damaged table, an overlap, a backup that differs. */
export interface Finding {
  severity: 'info' | 'warning' | 'error';
  message: string;
  /** A stable name for a finding a face says in its own words ('nothing-recognised': no table, no file system). */
  code?: 'nothing-recognised';
}

/** A file system as identified from its superblock (blkid's words). */
export interface FileSystemInfo {
  /** blkid's TYPE word: ext2, ext3, ext4, vfat, exfat, ntfs, xfs, btrfs, swap, LVM2_member, crypto_LUKS, iso9660, or unknown. */
  type: string;
  label?: string;
  /** As blkid prints it. */
  uuid?: string;
  /** Bytes the file system spans. */
  size: number;
  blockSize?: number;
  /** Bytes in use, from the file system's own counters or allocation map, where it has them. */
  used?: number;
  /** Extra facts: FAT12/16/32, LUKS version, LVM VG name, "not cleanly unmounted", "journal needs recovery". */
  version?: string;
  flags?: string[];
  /** An LVM2 physical volume's volume group. */
  volumeGroup?: string;
  /** For an unknown file system: its first bytes in hex, so that a person can recognise it. */
  firstBytes?: string;
  /** True when diskwright can list and copy its files. */
  browsable?: boolean;
}

export interface PartitionInfo {
  /** As sfdisk numbers it: the GPT entry's index + 1; MBR slots 1-4 and logical partitions from 5. */
  number: number;
  /** Bytes from the start of the disk. */
  start: number;
  size: number;
  /** GPT type GUID upper-case, or the MBR type byte in hex as sfdisk prints it ("83", "c", "ef", "5"). */
  type: string;
  name?: string;
  uuid?: string;
  bootable?: boolean;
  /** MBR: primary, extended or logical. */
  kind?: 'primary' | 'extended' | 'logical';
  filesystem?: FileSystemInfo;
}

export interface DiskLayout {
  table: 'gpt' | 'mbr' | null;
  sectorSize: number;
  /** The disk's size in bytes. */
  size: number;
  /** GPT: the disk GUID upper-case; MBR: the disk id as 0x........ (as sfdisk prints them). */
  id?: string;
  /** GPT: the first and last sectors partitions may use (the rest holds the tables). */
  firstUsable?: number;
  lastUsable?: number;
  partitions: PartitionInfo[];
  findings: Finding[];
  /** With no partition table and no file system recognised: the disk's first bytes in hex (up to 32). */
  firstBytes?: string;
}

/** One directory entry or stat result. Times are milliseconds since 1970 (UTC). */
export interface FileEntry {
  name: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
  mtime?: number;
  mode?: number;
  /** A symlink's target, shown, never followed. */
  target?: string;
}

/** A run of free bytes, relative to the start of the volume (the partition). */
export interface ByteRange {
  start: number;
  length: number;
}
