/**
 * The contract's facts about images: formats offered, what info, check, map and measure report, snapshots,
 * commit and rebase plans, and the places a file picker lists. Re-exported by api.ts.
 */
import type { FormatName } from './formats';
import type { DiskErrorDto } from './errors';
import type { OptionValues } from './options';

/** What the faces show about a format, taken from its driver (never from a list kept in a face). */
export interface FormatSummary {
  name: FormatName;
  /** "QCOW2", "UML COW". */
  label: string;
  /** One line on what it is for. */
  description: string;
  /** File name extensions without the dot, the usual one first. */
  extensions: string[];
  canCreate: boolean;
  /** Writes compressed clusters (convert -c). */
  compresses: boolean;
  /** Whether a new image takes a backing file: not at all, optionally, or always (a COW overlay). */
  backing: 'none' | 'optional' | 'required';
  canCheck: boolean;
  hasSnapshots: boolean;
}

export interface SnapshotInfo {
  id: string;
  name: string;
  'vm-state-size': number;
  'date-sec': number;
  'date-nsec': number;
  'vm-clock-sec': number;
  'vm-clock-nsec': number;
  icount?: number;
}

/** What `info` reports; keys follow qemu-img's JSON so people's scripts carry over. */
export interface ImageInfo {
  filename: string;
  format: FormatName;
  'virtual-size': number;
  'actual-size': number;
  'cluster-size'?: number;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'backing-filename-format'?: string;
  'dirty-flag': boolean;
  /** Set when the image's data is encrypted (qemu-img info's "encrypted: yes"); format-specific says how. */
  encrypted?: true;
  snapshots?: SnapshotInfo[];
  'format-specific'?: { type: string; data: Record<string, unknown> };
  /** Set when the header was recognised but this build cannot read the image's data yet. */
  'data-readable': boolean;
  'backing-image'?: ImageInfo;
  /** Set when this build cannot lock images (no native helper): a running VM is not kept from writing while we work. */
  'locking-unavailable'?: true;
  /** Set by the app (not by `info`) when the backing chain could not be followed; the image itself was read. */
  'backing-error'?: DiskErrorDto;
  /**
   * Set by the app (not by `info`) when no format recognised the file and it was read as raw only because raw
   * takes any file; the app asks before treating it as a disk (inspect with format 'raw' to mean it).
   */
  'format-guessed'?: true;
}

/** One finding of a check, in qemu-img's words; `fixed` once a repair mended it. */
export interface CheckProblem {
  severity: 'corruption' | 'leak' | 'error';
  message: string;
  fixed?: boolean;
  /** What the finding is, where a face words it differently from generic damage: the in-use mark of an image not closed cleanly. */
  kind?: 'unclean';
}

/** What a check finds; the counts and keys follow qemu-img check's JSON. */
export interface CheckReport {
  filename: string;
  format: FormatName;
  'check-errors': number;
  corruptions: number;
  leaks: number;
  'corruptions-fixed': number;
  'leaks-fixed': number;
  'image-end-offset'?: number;
  'total-clusters'?: number;
  'allocated-clusters'?: number;
  'fragmented-clusters'?: number;
  'compressed-clusters'?: number;
  problems: CheckProblem[];
}

export type ExtentKind = 'data' | 'zero' | 'unallocated';
/** One run of the allocation map, as `map --output json` prints it (qemu-img's keys). */
export interface MapEntry {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
  offset?: number;
}

/** A picture of the map: the image cut into `buckets.length` equal parts, each the share of each kind. */
export interface MapPicture {
  virtualSize: number;
  bucketSize: number;
  /**
   * The bytes of each kind per bucket. `backing` is the part of `data` that a backing file provides (not the
   * image itself); `compressed` the part of `data` stored compressed, where the format says so. Both are
   * left out where zero.
   */
  buckets: Array<{ data: number; zero: number; unallocated: number; backing?: number; compressed?: number }>;
}

/** The snapshot browser's list: the snapshots oldest first, and the image's state now. */
export interface SnapshotListing {
  snapshots: SnapshotInfo[];
  /** The image's virtual size now (the timeline's last point, "now"). */
  currentSize: number;
  /** Each snapshot's disk size when it was taken (by id). */
  diskSizes: Record<string, number>;
  /** The image cannot take snapshot work now, and why (dirty, read-only file, in use elsewhere); absent when it can. */
  refusal?: DiskErrorDto;
}

/** Where two states of an image differ (two snapshots, or one and now), from the mapping tables alone. */
export interface SnapshotDiff {
  /** Bytes that differ, in `ranges` separate ranges. */
  bytes: number;
  ranges: number;
  virtualSize: number;
  bucketSize: number;
  /** For each bucket of the map, the share (0..1) of it that differs. */
  buckets: number[];
}

/** What a new image needs on disk (qemu-img measure's figures, in bytes). */
export interface MeasureReport {
  /** For the data given (the source's, or none for an empty image). */
  required: number;
  /** With every cluster of the virtual size allocated. */
  'fully-allocated': number;
  bitmaps?: number;
}

/** What measure is asked about: a new image of `format` holding `source`'s data, or an empty one of `size` bytes. */
export interface MeasureSpec {
  format: FormatName;
  options: OptionValues;
  source?: string;
  size?: number;
}

/** What "Merge into base…" (commit) would change, for its confirmation. */
export interface CommitPlan {
  /** The image whose data is merged down. */
  overlay: string;
  /** The image that receives it (written). */
  base: string;
  /** Images between the two, which no longer read as before afterwards. */
  between: string[];
  /** Whether the overlay is emptied afterwards (its data then lives in the base only). */
  emptiesOverlay: boolean;
}

/** What "Change base…" (rebase) would change: the image is written; both backing files are only read. */
export interface RebasePlan {
  image: string;
  oldBacking?: string;
  newBacking?: string;
  /** The new backing file's format, as probed (the rebase records it). */
  newBackingFormat?: FormatName;
}

/** What a 'commit' job gives back. */
export interface CommitResult {
  /** Guest bytes written into the base. */
  copiedBytes: number;
  base: string;
  emptied: boolean;
}

export interface DirEntry {
  name: string;
  path: string;
  kind: 'dir' | 'file';
  size?: number;
  /** The format that recognises the file's first bytes (listDir probes files; raw is never named: it takes any file). */
  format?: FormatName;
}
/** What the wizards need to know about a place a new image would be written. */
export interface TargetInfo {
  /** The path made absolute. */
  path: string;
  /** The folder it would be written in exists (and is a folder). */
  folderExists: boolean;
  /** Something already has that name (a new image would replace it). */
  exists: boolean;
  /** What has that name is not a disk image diskwright recognises: replacing it takes a second confirmation (replaceNotImage). */
  notImage?: boolean;
  /** Free space in the folder's file system, when it can be told. */
  freeBytes?: number;
}

export interface DirListing {
  path: string;
  parent?: string;
  entries: DirEntry[];
}
