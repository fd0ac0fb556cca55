/**
 * The contract between the renderer and the main process (Electron IPC or the browser host's WebSocket).
 * Nothing here imports Node, the DOM or Electron: both sides compile against it. Its format names, named
 * targets, inside-the-disk shapes and image facts live in formats.ts, targets.ts, inside.ts and images.ts,
 * re-exported here.
 */
import type { DesktopCommand } from './desktop';
import type { DiskErrorDto } from './errors';
import type { OptionSpec, OptionValues } from './options';
import { FORMAT_NAMES, type FormatName } from './formats';
import { HOST_TARGET_NAMES, type HostTargetChoice, type HostTargetFinding, type HostTargetName, type HostTargetPlan, type HostTargetReport, type HostTargetSummary } from './targets';
import type { DiskLayout, InsideCopyResult, InsideEntry, InsideFileSystem, InsideFinding, InsideFreePicture, InsideListing, InsidePartition, SparsifyPartitionDto, SparsifyResult } from './inside';

import type { FormatSummary, SnapshotInfo, ImageInfo, CheckProblem, CheckReport, ExtentKind, MapEntry, MapPicture, SnapshotListing, SnapshotDiff, MeasureReport, MeasureSpec, CommitPlan, RebasePlan, CommitResult, DirEntry, TargetInfo, DirListing } from './images';

// The contract is spread over a few files; everything is reachable from here, as before.
export type { FormatSummary, SnapshotInfo, ImageInfo, CheckProblem, CheckReport, ExtentKind, MapEntry, MapPicture, SnapshotListing, SnapshotDiff, MeasureReport, MeasureSpec, CommitPlan, RebasePlan, CommitResult, DirEntry, TargetInfo, DirListing };
export { FORMAT_NAMES, HOST_TARGET_NAMES };
export type { FormatName, HostTargetChoice, HostTargetFinding, HostTargetName, HostTargetPlan, HostTargetReport, HostTargetSummary };
export type { DiskLayout, InsideCopyResult, InsideEntry, InsideFileSystem, InsideFinding, InsideFreePicture, InsideListing, InsidePartition, SparsifyPartitionDto, SparsifyResult };

export type JobId = string;

/** Each kind of job and what it is given (`kind` is the key). */
export interface JobSpecs {
  inspect: { path: string };
  map: { path: string; buckets: number };
  /**
   * `replace`: the person confirmed replacing a file already at `path` (without it the job refuses an existing
   * file); `replaceNotImage`: a second confirmation, needed as well when that file is not a disk image.
   */
  create: { path: string; format: FormatName; size: number; options: OptionValues; backing?: string; backingFormat?: FormatName; replace?: boolean; replaceNotImage?: boolean };
  check: { path: string; repair?: 'leaks' | 'all' };
  /**
   * A repair that leaves the image as it was when it fails or is cancelled: it mends a copy made beside the
   * image and renames it into place when done. keepCopy keeps the image as it was under a name beside it.
   */
  repair: { path: string; mode: 'leaks' | 'all'; keepCopy: boolean; target?: string };
  /** `snapshot`: export that internal snapshot (qemu-img convert -l); `keepSnapshots`: the target keeps the source's snapshots (qcow2 → qcow2). */
  /**
   * `hostTarget`: convert for a hypervisor or cloud (Azure, ESXi…): the target's plan sets the format, options and
   * size (targetFormat must be the target's format; `options` carries only what the target leaves open).
   */
  convert: { source: string; target: string; targetFormat: FormatName; options: OptionValues; compress?: boolean; snapshot?: string; keepSnapshots?: boolean; hostTarget?: HostTargetName; hostChoice?: HostTargetChoice };
  /** Takes an internal snapshot of the image as it is now. */
  'snapshot-create': { path: string; name: string };
  /**
   * Reverts the image to a snapshot; `saveCurrentAs` first takes a snapshot of the state being left, so that it
   * is not lost.
   */
  'snapshot-apply': { path: string; snapshot: string; saveCurrentAs?: string };
  'snapshot-delete': { path: string; snapshot: string };
  /** Merges the image's data into its backing file (qemu-img commit); `keepOverlay` leaves the image as it was (-d). */
  commit: { path: string; keepOverlay?: boolean };
  /**
   * Gives the image a new backing file (qemu-img rebase): safe mode first copies into it whatever differs
   * between the old and new backing files, so what the guest reads is unchanged; `unsafe` rewrites the name only.
   */
  rebase: { path: string; newBacking: string; newBackingFormat?: FormatName; unsafe?: boolean };
  /** Compares the guest-visible content of two images (the Convert wizard's verify). */
  /** `formatB`: read b as that format (a fixed VHD has no header to be probed by: Convert's verify names it). */
  /** `snapshotA`: read a as it was at that internal snapshot (the verify of a snapshot's export). */
  compare: { a: string; b: string; formatB?: FormatName; snapshotA?: string };
  /** One fingerprint of the guest's content, equal for the same content in any format (diskwright checksum). */
  checksum: { path: string; format?: FormatName };
  /**
   * Copies a file or folder out of a partition's file system (issue 22) into `target`, a new name (never an
   * existing one): written beside it and renamed into place, so a cancel leaves nothing behind.
   */
  'inside-copy': { path: string; partition: number; inner: string; target: string };
  /**
   * Compaction (the Compact wizard): 'preview' writes nothing and says what would be given back; 'new' writes a
   * compacted copy at `target` (`targetFormat`, default the image's); 'in-place' compacts a copy of the image
   * beside it and renames it into place when done (a cancel or a failure leaves the image as it was), keeping
   * the image as it was under a second name when `keepCopy`.
   */
  sparsify: { path: string; mode: 'preview' | 'new' | 'in-place'; target?: string; targetFormat?: FormatName; keepCopy?: boolean };
}

/** What each kind of job gives back when done; null where a job gives nothing (the contract carries no undefined). */
export interface JobResults {
  inspect: ImageInfo;
  map: MapPicture;
  /** The files written: the image, and any extent files beside it. */
  create: string[];
  check: CheckReport;
  repair: RepairResult;
  convert: ConvertResult;
  'snapshot-create': null;
  'snapshot-apply': null;
  'snapshot-delete': null;
  commit: CommitResult;
  rebase: RebaseResult;
  compare: CompareOutcome;
  checksum: ChecksumResult;
  'inside-copy': InsideCopyResult;
  sparsify: SparsifyResult;
}

/** What a 'checksum' job gives back: the fingerprint of what the guest sees (docs/checksum.md). */
export interface ChecksumResult {
  checksum: string;
  algorithm: string;
  size: number;
}

export type JobKind = keyof JobSpecs;
/** One kind of job as startJob takes it. */
export type JobSpecOf<K extends JobKind> = { kind: K } & JobSpecs[K];
/** Any job as startJob takes it. */
export type JobSpec = { [K in JobKind]: JobSpecOf<K> }[JobKind];
export type JobResult<K extends JobKind> = JobResults[K];

/** What a 'convert' job gives back. */
export interface ConvertResult {
  target: string;
  /** Bytes the new image takes on disk. */
  targetBytes: number;
  /** What an earlier convert to the same target left behind when it was stopped (killed), removed by this one. */
  removedTemporaries?: string[];
}

/** What a 'compare' job gives back (qemu-img compare's verdict). */
export interface CompareOutcome {
  identical: boolean;
  /** The first guest offset where the images differ. */
  mismatchOffset?: number;
  /** The lines qemu-img would print. */
  messages: string[];
}

/** What a 'rebase' job gives back. */
export interface RebaseResult {
  /** Guest bytes copied into the image (safe mode; 0 for a rebase that rewrites the name only). */
  copiedBytes: number;
}

/** What a 'repair' job gives back. */
export interface RepairResult {
  /** The repair's own report (counts after it, with what it fixed). */
  report: CheckReport;
  /** The image as it was before the repair, when a copy was asked for. */
  keptCopy?: string;
  /** Working copies an earlier repair of the image left behind when it was stopped (killed), removed by this one. */
  removedTemporaries?: string[];
}

/**
 * What a job's progress counts: most jobs have one phase named after their kind; a repair first copies the
 * image ('copy', bytes), then repairs the copy ('repair', the format's own unit).
 */
export type JobPhase = 'map' | 'check' | 'copy' | 'repair' | 'compare' | 'convert' | 'commit' | 'rebase' | 'checksum' | 'inside-copy' | 'sparsify';

export interface JobProgress {
  done: number;
  total: number;
  phase: JobPhase;
}
export type JobEvent =
  | { id: JobId; type: 'progress'; progress: JobProgress }
  | { id: JobId; type: 'done'; result: JobResults[JobKind] }
  | { id: JobId; type: 'failed'; error: DiskErrorDto };

export type Unsubscribe = () => void;

/**
 * The Electron IPC channel job events are pushed on. The sandboxed preload cannot import a value, so it
 * declares its copy with this type: a different name there fails to compile.
 */
export type JobEventChannel = 'job-event';
export const JOB_EVENT_CHANNEL: JobEventChannel = 'job-event';
/** The Electron IPC channel every contract call travels on, as (method, args); the main side checks both. */
export type ApiCallChannel = 'api-call';
export const API_CALL_CHANNEL: ApiCallChannel = 'api-call';

/**
 * The contract. Everything it carries survives JSON (the browser host's WebSocket): "nothing" is null, never
 * undefined, and an optional field or trailing argument is left out, so both bridges pass values as they are.
 */
export interface DiskwrightApi {
  /**
   * Header-level and format-specific facts about an image (and its backing chain). Without `format` the file
   * is probed; a file no format recognises comes back as raw with 'format-guessed' set.
   */
  inspect(path: string, format?: FormatName): Promise<ImageInfo>;
  /**
   * The allocation map drawn into a fixed number of buckets. Where the chain runs into a backing file
   * outside its image's folder that was not allowed, the map stops there: what that file would provide
   * shows as unallocated (inspect's 'backing-error' says which file).
   */
  mapPicture(path: string, buckets: number): Promise<MapPicture>;
  /**
   * The user's answer to "follow this backing file outside the image's folder?": allows the image at
   * `imagePath` to follow exactly `backingPath` (which must be the backing file it names), for this launch
   * only. Inspect, map and jobs then follow it.
   */
  allowBackingPath(imagePath: string, backingPath: string): Promise<void>;
  /** The images opened lately (newest first), kept per user; inspect adds to it. */
  recentImages(): Promise<string[]>;
  /** Every format this build knows, with what it can do. */
  formats(): Promise<FormatSummary[]>;
  /** The options a format's create accepts: one schema for CLI, service and wizard. */
  createOptions(format: FormatName): Promise<OptionSpec[]>;
  /** The folder browser used where no native dialog exists (browser host). */
  listDir(path?: string): Promise<DirListing>;
  /** The native open dialog (Electron); null when cancelled or unavailable. */
  pickImage(): Promise<string | null>;
  /** The native save dialog (Electron) suggesting `suggestedName`; null when cancelled or unavailable (browser host). */
  pickTarget(suggestedName: string): Promise<string | null>;
  /** Whether a new image can go at `path`: its folder, whether the name is taken, the free space there. */
  targetInfo(path: string): Promise<TargetInfo>;
  /** "Open read-only anyway": from now on (this launch) reads of this image take no lock, while another program writes it. */
  readWhileInUse(path: string): Promise<void>;
  /** An image's internal snapshots for the snapshot browser (qcow2); other formats answer with none. */
  snapshots(path: string): Promise<SnapshotListing>;
  /** For each snapshot id, the bytes that deleting it would give back (clusters only its tables reach). */
  snapshotSpace(path: string): Promise<Record<string, number>>;
  /** The allocation map of a snapshot (by id), drawn as mapPicture draws the image's. */
  snapshotMap(path: string, snapshot: string, buckets: number): Promise<MapPicture>;
  /** Where snapshot `a` and snapshot `b` (or, for b null, the image now) differ, drawn into `buckets`. */
  snapshotDiff(path: string, a: string, b: string | null, buckets: number): Promise<SnapshotDiff>;
  /** What a new image would take on disk (the wizards' estimates and free-space checks), as qemu-img measure. */
  measure(spec: MeasureSpec): Promise<MeasureReport>;
  /** What merging the image into its backing file would change (for the confirmation). */
  commitPlan(path: string): Promise<CommitPlan>;
  /** What giving the image the backing file `newBacking` would change (for the confirmation). */
  rebasePlan(path: string, newBacking: string): Promise<RebasePlan>;
  /** The hypervisors and clouds Convert can make a disk for. */
  hostTargets(): Promise<HostTargetSummary[]>;
  /** What a convert of `source` for `target` will make (format, size, notes such as Azure's rounding). */
  hostTargetPlan(source: string, target: HostTargetName, choice: HostTargetChoice): Promise<HostTargetPlan>;
  /** Whether an image is ready for a target as it is ("Ready for Azure" on Inspect). */
  readyFor(path: string, target: HostTargetName): Promise<HostTargetReport>;
  /** Inside the disk (issue 22): the partition table and each partition's file system, with findings in plain words. */
  partitions(path: string): Promise<DiskLayout>;
  /** A folder of a partition's file system (`partition` as sfdisk numbers it; 0 for a whole-disk file system). */
  insideList(path: string, partition: number, dir: string): Promise<InsideListing>;
  /** Where the image holds data that its file systems mark free (what a compaction gives back), drawn into `buckets`. */
  insideFree(path: string, buckets: number): Promise<InsideFreePicture>;
  startJob(spec: JobSpec): Promise<JobId>;
  cancelJob(id: JobId): Promise<void>;
  /**
   * Unlocks an encrypted image (or a backing file of one) for its session in the app: the passphrase is checked
   * by opening the image with it (a wrong LUKS passphrase fails with "the passphrase does not open any key
   * slot"; the legacy AES has no check) and is then held in the main process only, by the file's real path,
   * until forgetImageKey. It is never sent back, logged, or put in the recent list or any file.
   */
  unlockImage(path: string, passphrase: string): Promise<void>;
  /**
   * The passphrase a new encrypted image at `path` is made with (New Image, Convert with encrypt.format): held
   * as unlockImage holds it, so that no job spec carries it; forgotten with forgetImageKey.
   */
  setTargetKey(path: string, passphrase: string): Promise<void>;
  /** Wipes and drops the key held for the image at `path` (its session ended); nothing held is no error. */
  forgetImageKey(path: string): Promise<void>;
  onJobEvent(listener: (e: JobEvent) => void): Unsubscribe;
}

/** The request/response methods, as a map the IPC and WebSocket bridges are typed by. */
export type ApiMethod = Exclude<keyof DiskwrightApi, 'onJobEvent'>;
export const API_METHODS: readonly ApiMethod[] = ['inspect', 'mapPicture', 'allowBackingPath', 'recentImages', 'formats', 'createOptions', 'listDir', 'pickImage', 'pickTarget', 'targetInfo', 'snapshots', 'snapshotSpace', 'snapshotMap', 'snapshotDiff', 'measure', 'commitPlan', 'rebasePlan', 'hostTargets', 'hostTargetPlan', 'readyFor', 'startJob', 'cancelJob', 'unlockImage', 'setTargetKey', 'forgetImageKey', 'partitions', 'insideList', 'insideFree', 'readWhileInUse'];
export type ApiArgs<M extends ApiMethod> = Parameters<DiskwrightApi[M]>;
export type ApiResult<M extends ApiMethod> = Awaited<ReturnType<DiskwrightApi[M]>>;
/** One contract call by name: what each bridge carries, and what the renderer builds every method on. */
export type ApiCaller = <M extends ApiMethod>(method: M, args: ApiArgs<M>) => Promise<ApiResult<M>>;

/**
 * What Electron's preload exposes as window.diskwright: the contract's calls through one function, job events,
 * and the path of a dropped file (which only Electron can give).
 */
export interface DesktopBridge {
  call: ApiCaller;
  onJobEvent(listener: (e: JobEvent) => void): Unsubscribe;
  pathForFile(file: File): string;
  /** The native menu's commands and the files the system opens with the app (desktop.ts). */
  onDesktopCommand?(listener: (c: DesktopCommand) => void): Unsubscribe;
}

export type { DiskErrorDto, OptionSpec, OptionValues };

/**
 * The browser host's WebSocket messages (JSON text frames). A request names a contract method; its reply
 * carries the same id and either a result or an error. Job events are pushed without an id.
 */
export interface WireRequest {
  id: number;
  method: ApiMethod;
  args: unknown[];
}
export type WireMessage = { id: number; result: unknown } | { id: number; error: DiskErrorDto } | { event: JobEvent };

/**
 * What an Electron IPC handler returns. Errors travel as data because Electron reduces a thrown error to
 * its message text; the preload turns `error` back into a rejection carrying the DiskErrorDto.
 */
export type IpcReply<T> = { ok: true; result: T } | { ok: false; error: DiskErrorDto };

/*
 * Inside the disk (issue 22): what src-main/inside/ reads, as the app receives it. Optional fields are left out
 * where the disk does not say (the same shapes as `diskwright partitions --output json`, in camelCase).
 */

