/**
 * The contract between the formats and everything above them: BlockDevice (an open image: read, write,
 * status, and what commit, rebase and convert need), FormatDriver (what a format offers: probe, describe,
 * open, create, check, snapshots, measure, its create options), and the options and results those take and
 * give. The services, the registry and the faces know a format only through these.
 */
import type { CheckProblem, CheckReport, FormatName, ExtentKind, ImageInfo, SnapshotInfo } from '../../src-shared/api';
import type { OptionSpec, OptionValues } from '../../src-shared/options';
import type { ImageFile } from './file';

export type { CheckProblem, CheckReport, FormatName, ExtentKind };

/** A run of guest addresses with one allocation state, as a driver's status() reports it. */
export interface Extent {
  kind: ExtentKind; // data | zero | unallocated (reads through to the backing file, or zeros without one)
  length: number; // bytes from the queried offset that share this state (> 0)
  hostOffset?: number; // where the data lies in the image file, when it lies there contiguously
  /** Data known to read as zeros (a file-system hole under a preallocated qcow2 cluster): `map` shows it as data and zero, as qemu-img does. */
  readsAsZero?: boolean;
  /** Data stored compressed (a qcow2 compressed cluster, a streamOptimized grain): the app's map draws it apart. */
  compressed?: boolean;
}

/** An open image. Offsets are guest (virtual) byte addresses. */
/** An image's content identity now and after its planned change (BlockDevice.planContentChange). */
export interface ContentChange {
  now: string;
  next: string;
}

export interface BlockDevice {
  readonly format: FormatName;
  readonly path: string;
  readonly size: number;
  readonly readOnly: boolean;
  /** The opened backing image, if the format has one and it was followed. */
  readonly backing?: BlockDevice;
  read(offset: number, into: Uint8Array): Promise<void>;
  write(offset: number, data: Uint8Array): Promise<void>;
  writeZeroes(offset: number, length: number): Promise<void>;
  status(offset: number, length: number): Promise<Extent>;
  /** The allocation unit, where the format has one (qcow2 cluster, VHDX block); convert aligns its work to it. */
  readonly clusterSize?: number;
  /**
   * True where a write into a unit the image has not allocated yet writes only that data, the rest of the unit
   * staying a hole in the file that reads as zeros (a dynamic VHD's block, placed past the end of the file):
   * convert then writes only the data of such a unit, as qemu-img does, not the whole unit with its zeros (the
   * qcow2 cluster, VMDK grain and VDI block that qemu writes whole).
   */
  readonly newUnitsStaySparse?: boolean;
  /** Writes whole clusters compressed (convert -c); only formats that store compressed clusters have it. */
  writeCompressed?(offset: number, data: Uint8Array): Promise<void>;
  /**
   * Releases the allocation units (qcow2 clusters) lying wholly inside [offset, offset + length), as qemu's
   * discard does: their host space goes back to the image's free space. A unit at the end of the image counts
   * as whole when the range runs to the end. Parts of units at the edges are left as they are. What released
   * units read afterwards is what qemu makes them read: zeros, even over a backing file (qcow2 v3 marks them
   * zero clusters, so the backing file's data does not show through); qcow2 v2 without a backing file leaves
   * them unallocated (zeros too). Where that cannot hold (qcow2 v2 with a backing file: no zero flag, so the
   * backing file's data would appear) it throws EUNSUPPORTED and changes nothing. Raw punches a hole (native helper;
   * EUNSUPPORTED without it). Formats without discard cannot release space.
   */
  discard?(offset: number, length: number): Promise<void>;
  /**
   * Why discard would refuse on this image, from the open image's own facts (undefined: it can release space):
   * the words its discard throws, asked before anything is written (sparsify's dry run and in-place run), of a
   * read-only device too.
   */
  discardRefusal?(): string | undefined;
  /** Changes the virtual size. Shrinking is only done when `shrink` is true. */
  resize?(newSize: number, shrink: boolean): Promise<void>;
  flush(): Promise<void>;
  /**
   * qemu's cache=unsafe from now on (convert -t unsafe): flush() returns at once and close() does not sync,
   * so what was written reaches the disk when the system writes it back. Formats without it always flush.
   */
  skipFlushes?(): void;
  /**
   * Rewrites the backing file recorded in the image (rebase, and commit -b which drops the images it merged):
   * `name` as it is to be written (relative to the image's folder, or absolute), `format` where the format records
   * one, undefined to make the image stand alone. Formats that tie a child to its parent's identity (VMDK's
   * parentCID, VHDX's parent_linkage, COW's mtime and size) record the new parent's, read from `resolvedPath`.
   * Only the header changes: what the guest reads is the caller's business (rebase's safe mode copies first).
   */
  setBackingFile?(name: string | undefined, format: FormatName | undefined, resolvedPath: string | undefined): Promise<void>;
  /**
   * Makes every guest range unallocated again so that reads go through to the backing file (commit empties the
   * overlay after copying its data down, as qemu-img commit does). Space is given back where the format can.
   */
  makeEmpty?(): Promise<void>;
  /**
   * The identity a child records for this image's content (VMDK CID, VHDX data write GUID), which this image's
   * first change replaces. Chooses now the identity that change will give (kept until it is made) and returns
   * both, so that a child can accept either before anything is written (commit's handover, services/commit.ts).
   */
  planContentChange?(): ContentChange | undefined;
  /** Makes the planned change now (the new identity written and synced), whether or not data follows. */
  adoptContentChange?(): Promise<void>;
  /**
   * Commit's handover, on the image that records its parent's identity (VMDK parentCID, VHDX parent_linkage,
   * UML COW mtime): `beginParentChange` records, synced, that the parent may be as it is or as it will be
   * (`change`: the parent's content identities, where it has them), before the parent is written;
   * `parentWritten` runs after each write into the parent (COW sets the parent's mtime back to the one it
   * recorded); `endParentChange` records only the parent as it is now, in one write. Between the two, the
   * image opens over the parent in either state, so a kill at any step leaves a chain that opens.
   */
  beginParentChange?(change: ContentChange | undefined): Promise<void>;
  parentWritten?(): Promise<void>;
  endParentChange?(): Promise<void>;
  /**
   * Where the guest range from `offset` lies stored as is (no compression, encryption or other change) in one
   * file, in one piece: the file, the offset in it, and how many bytes of the asked `length` lie there (at least
   * one). Undefined where it does not (a hole, a compressed cluster). convert copies such ranges file to file
   * inside the kernel (copyIn).
   */
  storedAt?(offset: number, length: number): Promise<{ file: ImageFile; offset: number; length: number } | undefined>;
  /**
   * Writes guest [offset, offset + length) from `file` at `fileOffset` inside the kernel (copy_file_range: a
   * reflink where the file system shares blocks). Resolves with how many bytes from `offset` on it wrote:
   * fewer than `length` (often 0) where the kernel could not (another file system, no support); the caller
   * writes the rest itself, and the part not written is as it was.
   */
  copyIn?(offset: number, length: number, file: ImageFile, fileOffset: number): Promise<number>;
  /** Closes this image and its backing chain. */
  close(): Promise<void>;
}

/**
 * The image's own folder plus the exact backing files the user allowed for this launch (the app asks
 * before following a backing file outside an image's folder; see BackingGrants in backing-path.ts).
 */
export interface BackingGrantPolicy {
  /** True when the user allowed the image at `imagePath` to follow `backingPath` (both absolute). */
  allows(imagePath: string, backingPath: string): boolean;
  /**
   * An outside backing file without a grant: 'refuse' fails with EOUTSIDE (inspect, convert); 'cut' opens
   * the image that names it without its backing chain, so its unallocated ranges stay unallocated (the map).
   */
  readonly ungranted: 'refuse' | 'cut';
}

/** Where a backing file may be followed from: the image's own folder only, anywhere, nowhere, or the folder plus the user's grants. */
export type BackingPolicy = 'inside-folder' | 'anywhere' | 'none' | BackingGrantPolicy;

export interface OpenOptions {
  readOnly: boolean;
  backingPolicy: BackingPolicy;
  /**
   * Reads a backing file that changed since the image was made against it (a UML COW file's recorded mtime and
   * size, a VMDK child's parentCID): without it such a pair fails with EBACKINGCHANGED, as UML and VMware refuse it.
   */
  acceptChangedBacking?: boolean;
  /**
   * Opens the image as it was when this internal snapshot (an id, else a name) was taken, read-only
   * (convert -l, the snapshot browser's map). Formats without internal snapshots refuse it.
   */
  snapshot?: string;
  /** The actual backing file, when the recorded name is not where it lies (uml_moo -b: a path from inside a chroot). */
  backingOverride?: string;
  /**
   * Opens a backing image: given by the registry so that formats never import it. `declaredSize`: the size
   * a container says a raw member is (a .hdd bundle's Disk_size for a Plain image), which wins over its length.
   */
  openBacking: (path: string, format: FormatName | undefined, readOnly: boolean, declaredSize?: number) => Promise<BlockDevice>;
  /** The size a container declares for a raw image (see openBacking): the disk is that long, whatever the file's length. */
  declaredSize?: number;
  /** The passphrase of an encrypted image (the secret's bytes); never logged or echoed. */
  passphrase?: Uint8Array;
  /**
   * Opens an encrypted image without its key, for work that touches no data (map, check, info, snapshots,
   * resize): only data is encrypted, so data reads and writes then refuse. Without it (and without a
   * passphrase) the open itself refuses, as qemu's does.
   */
  withoutKey?: boolean;
}

export interface CreateOptions {
  options: OptionValues;
  backingFile?: string;
  backingFormat?: FormatName;
  /** Size of the backing image, looked up by the service when size is not given. */
  backingSize?: number;
  /**
   * The name the image will have once complete, when create writes a temporary path beside it: names written
   * inside the image (a VMDK descriptor's extents, a Parallels bundle's image) must be the final ones.
   */
  targetPath?: string;
  /** The passphrase of an image created encrypted (encrypt.format, encrypt.key-secret); never logged or echoed. */
  passphrase?: Uint8Array;
  /**
   * false: the caller syncs the new image itself before renaming it into place (convert, after filling it), or
   * never (-t unsafe), so the create makes no sync at all. By default the create ends with one sync.
   */
  durable?: boolean;
}

/**
 * Files a create wrote beside the image (VMDK extents), under hidden temporary names that the image names while
 * it is written (services/atomic.ts ExtraFiles gives them their final names once the image is complete).
 */
export interface CreatedFiles {
  /** Each file's temporary path, as written, and the final path it gets just before the image is renamed into place. */
  extraFiles: Array<{ temp: string; final: string }>;
  /** Rewrites the image, still at its own temporary path, to name the files' final names (synced before it returns). */
  nameFinal(): Promise<void>;
}

export interface CheckOptions {
  /** Where the check may follow extents and backing files from (the CLI: anywhere; the app: its grants). Default 'inside-folder'. */
  backingPolicy?: BackingPolicy;
  /** Cancels the check (or repair) between steps; a repair cancelled mid-way leaves an image the next check repairs. */
  signal?: AbortSignal;
  /** Progress in any unit the format likes (clusters, table entries), done ≤ total. */
  onProgress?: (done: number, total: number) => void;
}

/** Header-level facts, gathered without reading guest data; drivers that cannot read data yet still give these. */
export type HeaderInfo = Omit<ImageInfo, 'filename' | 'actual-size' | 'backing-image' | 'full-backing-filename'> & {
  /** Set by formats whose data lives in several files (VMDK extents): the bytes all of them take on disk. */
  'actual-size'?: number;
};

/** qemu-img measure's figures, in bytes. */
export interface MeasureResult {
  required: number;
  fullyAllocated: number;
}

/** A guest range where two states of an image differ (snapshot --diff). */
export interface DiffRange {
  start: number;
  length: number;
}

/** What a snapshot records besides its tables, given to create when it must be reproduced (convert --keep-snapshots). */
export interface SnapshotMeta {
  id?: string;
  dateSec?: number;
  dateNsec?: number;
  vmClockNs?: bigint | number;
  icount?: number;
}

/** Internal snapshots, for formats that keep them (qcow2). Names or ids identify a snapshot, as in qemu-img. */
export interface SnapshotOps {
  list(path: string): Promise<SnapshotInfo[]>;
  /** Takes a snapshot of the current state; `meta` (a copied snapshot's id, date, VM clock) instead of fresh ones. */
  create(path: string, name: string, meta?: SnapshotMeta): Promise<void>;
  apply(path: string, nameOrId: string): Promise<void>;
  delete(path: string, nameOrId: string): Promise<void>;
  /** Ranges that differ between snapshot `a` and `b` (or the current state), from the mapping tables alone. */
  diff(path: string, a: string, b?: string): Promise<DiffRange[]>;
  /**
   * For each snapshot (by id), the bytes that deleting it would give back: the clusters whose every reference
   * comes from that snapshot's tables (its L1 table, the L2 tables and data only it reaches).
   */
  exclusiveBytes?(path: string, signal?: AbortSignal): Promise<Record<string, number>>;
  /**
   * The list with each snapshot's disk size (by id) and the image's size now, from one read of the header and
   * the snapshot table (the snapshot browser's listing; opening a view per snapshot costs O(n²) at 1,000).
   */
  listWithSizes?(path: string): Promise<{ snapshots: SnapshotInfo[]; diskSizes: Record<string, number>; currentSize: number }>;
}

export interface FormatDriver {
  readonly name: FormatName;
  /** The name a person reads: "QCOW2", "UML COW". */
  readonly label: string;
  /** One line on what the format is for, in a person's words ("QEMU/KVM: snapshots, compression, backing files"). */
  readonly description: string;
  /** File name extensions without the dot, the usual one first: open dialogs, file filters, the default target name. */
  readonly extensions: readonly string[];
  /**
   * Loads now the code its open and describe load on first use (the app's first image would otherwise wait for
   * it): a long-running face calls it once it is idle (registry preloadDrivers).
   */
  preload?(): Promise<void>;
  /**
   * True when its open devices take overlapping calls safely, so callers may keep several reads (or writes)
   * under way: raw does positioned file I/O only, and qcow2 queues its mutations in call order while its reads
   * touch only caches. Devices of other formats are given one call at a time.
   */
  readonly concurrentCalls: boolean;
  /**
   * True when the image at `path` spans several files (a VMDK descriptor and its extents, a Parallels bundle's
   * descriptor and images): whole-image work that copies a file (the safe repair) cannot copy just that one.
   */
  spansFiles?(path: string): Promise<boolean>;
  /** Whether a new image of this format can stand on a backing file (create -b): optional (qcow2), required (UML COW). */
  readonly backingFiles?: 'optional' | 'required';
  /** True when its devices store compressed clusters (writeCompressed; convert -c). */
  readonly writesCompressed?: boolean;
  /** How sure the driver is that `head` (the first bytes of the file) is its format: 0 = not mine; raw scores 1. */
  probe(head: Uint8Array, path: string): number;
  /** Reads the header and returns what `info` shows. */
  describe(file: ImageFile): Promise<HeaderInfo>;
  open(path: string, opts: OpenOptions): Promise<BlockDevice>;
  create?(path: string, size: number, opts: CreateOptions): Promise<void | CreatedFiles>;
  /** Checks (and with repair 'leaks' or 'all', repairs) the image at `path`, as qemu-img check does for the format. */
  check?(path: string, repair: 'none' | 'leaks' | 'all', opts?: CheckOptions): Promise<CheckReport>;
  /**
   * For formats whose image can be a folder (a Parallels .hdd bundle): the file inside `dir` that stands
   * for it (its DiskDescriptor.xml), or undefined when the folder is not one of its images. The registry
   * asks before opening a folder, and then probes, describes and opens that file instead.
   */
  folderEntry?(dir: string): Promise<string | undefined>;
  readonly snapshots?: SnapshotOps;
  /**
   * What a new image of this format needs on disk (measure, the wizards' estimates): `required` for the given
   * guest data, `fullyAllocated` with every cluster allocated, computed as qemu-img measure does where qemu has it.
   * `data` lists the guest ranges that hold data (sorted, not overlapping), or is undefined for an empty image.
   */
  measure?(size: number, opts: CreateOptions, data: readonly DiffRange[] | undefined): Promise<MeasureResult>;
  /**
   * What the persistent bitmaps of the image in `file` would take in a target of this format with clusters of
   * `clusterSize` (measure's "bitmaps"); undefined when it keeps none (qemu then omits the figure).
   */
  persistentBitmapsSize?(file: ImageFile, clusterSize: number): Promise<number | undefined>;
  /** ONE source for create options: drives CLI -o parsing, validation and the wizard form. */
  readonly createOptions: OptionSpec[];
}
