/**
 * The one implementation of the contract on top of the services. The browser host and Electron both
 * call into it through `callApi`, which validates arguments first, so the two faces cannot drift apart.
 */
import * as nodePath from 'node:path';
import { promises as fsp } from 'node:fs';
import type { ApiArgs, ApiMethod, ApiResult, DirListing, DiskErrorDto, DiskwrightApi, FormatName, FormatSummary, ImageInfo, TargetInfo, HostTargetChoice, HostTargetName, HostTargetPlan, HostTargetReport, HostTargetSummary, JobEvent, JobId, JobSpec, MapPicture, OptionSpec, SnapshotDiff, SnapshotListing, CommitPlan, RebasePlan, MeasureReport, MeasureSpec } from '../../src-shared/api';
import { BackingGrants, reachedPath } from '../block/backing-path';
import { DiskError, toDiskError } from '../block/errors';
import { shareReadsOf } from '../block/lock';
import { driverFor, formatSummaries, resolveBackingPath } from '../registry';
import type { BackingPolicy } from '../block/types';
import { listDir, targetInfo } from '../services/browse';
import { RecentImages } from '../services/recent';
import { inspectImage } from '../services/info';
import type { JobManager } from '../services/jobs';
import { mapPicture } from '../services/map';
import { commitPlan } from '../services/commit';
import { measureImage } from '../services/measure';
import { rebasePlan } from '../services/rebase';
import { snapshotDiffPicture, snapshotListing, snapshotMapPicture, snapshotSpace } from '../services/snapshot';
import { planForSource, readyFor, targetSummaries } from '../services/targets';
import { forgetImageKey, holdTargetKey, unlockImage } from '../services/unlock';
import { freePicture, listFolder, listPartitions } from '../services/inside';
import type { DiskLayout, InsideFreePicture, InsideListing } from '../../src-shared/api';
import { isApiMethod, parseArgs } from './schemas';

export { ARG_SCHEMAS, isApiMethod, parseArgs } from './schemas';

export interface ApiOptions {
  /**
   * How far backing files may be followed. Unset (both faces): the image's folder plus what the user
   * allowed with allowBackingPath, recorded in `backingGrants`.
   */
  backingPolicy?: BackingPolicy;
  /** This launch's grants; share them with the JobManager (grants.policy('refuse')) so jobs see them too. */
  backingGrants?: BackingGrants;
  /** The native open dialog; absent in the browser host, where pickImage answers null. */
  pickImage?: () => Promise<string | null>;
  /** Where the recently opened images are kept (a JSON file); unset keeps them for this launch only. */
  recentFile?: string;
  /** The native save dialog; absent in the browser host, where pickTarget answers null. */
  pickTarget?: (suggestedName: string) => Promise<string | null>;
}

/** The contract implemented with the services. Arguments are assumed valid: go through callApi from outside. */
export function createApi(jobs: JobManager, opts: ApiOptions = {}): DiskwrightApi {
  const grants = opts.backingGrants ?? new BackingGrants();
  const backingPolicy = opts.backingPolicy ?? grants.policy('refuse');
  // The map of an image whose backing file was not allowed is the image's own allocation, not an error.
  const mapPolicy = opts.backingPolicy ?? grants.policy('cut');
  const recent = new RecentImages(opts.recentFile);
  return {
    async inspect(path: string, format?: FormatName): Promise<ImageInfo> {
      // The image itself is shown even when its chain cannot be followed all the way; 'backing-error' says why.
      const info = await inspectImage(path, { format, backingChain: true, backingPolicy, chainErrors: 'record' });
      // A file raw only took by default is not an image the user opened until they say it is one.
      if (format === undefined && info.format === 'raw') info['format-guessed'] = true;
      else await recent.remember(nodePath.resolve(path));
      return info;
    },
    mapPicture(path: string, buckets: number): Promise<MapPicture> {
      // The map reads only the tables, which are not encrypted: an image whose key was not given still has one.
      return mapPicture(path, buckets, { backingPolicy: mapPolicy, withoutKey: true });
    },
    async allowBackingPath(imagePath: string, backingPath: string): Promise<void> {
      // Only a file the image really names — its backing file, or one of its extents (a VMDK's data files) — can
      // be allowed, and only for that image.
      const info = await inspectImage(imagePath, { backingChain: false, backingPolicy: 'none' });
      const named = namedFiles(imagePath, info);
      const wanted = nodePath.resolve(backingPath);
      const actual = named.find((f) => f === wanted);
      if (actual === undefined) {
        if (named.length === 0) throw new DiskError('EINVAL', `${imagePath}: the image names no backing file or extent to allow`, imagePath);
        throw new DiskError('EINVAL', `${imagePath}: ${backingPath} is not a file this image uses (it uses ${named.join(', ')})`, imagePath);
      }
      grants.grant(imagePath, actual);
    },
    recentImages(): Promise<string[]> {
      return recent.all();
    },
    async formats(): Promise<FormatSummary[]> {
      return formatSummaries();
    },
    async createOptions(format: FormatName): Promise<OptionSpec[]> {
      // A copy: the registry's specs are shared by the CLI and must not be changed by a caller.
      return structuredClone(driverFor(format).createOptions);
    },
    listDir(path?: string): Promise<DirListing> {
      return listDir(path);
    },
    async pickImage(): Promise<string | null> {
      return opts.pickImage ? opts.pickImage() : null;
    },
    async pickTarget(suggestedName: string): Promise<string | null> {
      return opts.pickTarget ? opts.pickTarget(suggestedName) : null;
    },
    targetInfo(path: string): Promise<TargetInfo> {
      return targetInfo(path);
    },
    async readWhileInUse(path: string): Promise<void> {
      const st = await fsp.stat(path).catch((err: unknown) => {
        throw toDiskError(err, path);
      });
      shareReadsOf(st.dev, st.ino);
    },
    snapshots(path: string): Promise<SnapshotListing> {
      return snapshotListing(path);
    },
    snapshotSpace(path: string): Promise<Record<string, number>> {
      return snapshotSpace(path);
    },
    snapshotMap(path: string, snapshot: string, buckets: number): Promise<MapPicture> {
      return snapshotMapPicture(path, snapshot, buckets);
    },
    snapshotDiff(path: string, a: string, b: string | null, buckets: number): Promise<SnapshotDiff> {
      return snapshotDiffPicture(path, a, b ?? undefined, buckets);
    },
    measure(spec: MeasureSpec): Promise<MeasureReport> {
      return measureImage({ format: spec.format, options: spec.options, source: spec.source, size: spec.size, backingPolicy });
    },
    commitPlan(path: string): Promise<CommitPlan> {
      return commitPlan({ path, backingPolicy });
    },
    async rebasePlan(path: string, newBacking: string): Promise<RebasePlan> {
      const plan = await rebasePlan({ path, newBacking, unsafe: false, backingPolicy });
      // The new base's format is recorded with it (qemu-img rebase insists on one): the app probes it.
      const base = plan.newBacking ?? nodePath.resolve(nodePath.dirname(path), newBacking);
      return { ...plan, newBackingFormat: (await inspectImage(base, { backingPolicy: 'none' })).format };
    },
    async hostTargets(): Promise<HostTargetSummary[]> {
      return targetSummaries();
    },
    async hostTargetPlan(source: string, target: HostTargetName, choice: HostTargetChoice): Promise<HostTargetPlan> {
      const { options: _options, ...plan } = await planForSource(source, target, choice, { backingPolicy });
      return plan;
    },
    readyFor(path: string, target: HostTargetName): Promise<HostTargetReport> {
      return readyFor(path, target);
    },
    partitions(path: string): Promise<DiskLayout> {
      return listPartitions({ path, backingPolicy });
    },
    async insideList(path: string, partition: number, dir: string): Promise<InsideListing> {
      const listed = await listFolder({ path, partition, inner: dir, backingPolicy });
      return { partition, ...listed };
    },
    insideFree(path: string, buckets: number): Promise<InsideFreePicture> {
      // Counted over the same chain as the map (mapPolicy), so the layer lies on the picture it is drawn over.
      return freePicture({ path, buckets, backingPolicy: mapPolicy });
    },
    async startJob(spec: JobSpec): Promise<JobId> {
      return jobs.start(spec);
    },
    async cancelJob(id: JobId): Promise<void> {
      jobs.cancel(id);
    },
    // The passphrase becomes bytes here; the services wipe them. (The string itself cannot be wiped in JS: it
    // is dropped at once and never kept.)
    unlockImage(path: string, passphrase: string): Promise<void> {
      return unlockImage(path, Buffer.from(passphrase, 'utf8'));
    },
    async setTargetKey(path: string, passphrase: string): Promise<void> {
      holdTargetKey(path, Buffer.from(passphrase, 'utf8'));
    },
    async forgetImageKey(path: string): Promise<void> {
      forgetImageKey(path);
    },
    onJobEvent(listener: (e: JobEvent) => void) {
      return jobs.onEvent(listener);
    },
  };
}

/** Calls one method by name with untrusted arguments: unknown names and bad arguments give EINVAL. */
export async function callApi(api: DiskwrightApi, method: unknown, args: unknown): Promise<unknown> {
  if (!isApiMethod(method)) throw new DiskError('EINVAL', `unknown method ${JSON.stringify(String(method)).slice(0, 80)}`);
  return invoke(api, method, parseArgs(method, args));
}

function invoke<M extends ApiMethod>(api: DiskwrightApi, method: M, args: ApiArgs<M>): Promise<ApiResult<M>> {
  const fn = api[method] as (...a: ApiArgs<M>) => Promise<ApiResult<M>>;
  return fn.apply(api, args);
}

/** What crosses a bridge when a call fails: a code and a plain message, never a stack. */
export function errorDto(err: unknown): DiskErrorDto {
  return toDiskError(err).toDto();
}

/** The files outside itself an image names: its backing file and its extents (VMDK), as absolute paths. */
function namedFiles(imagePath: string, info: ImageInfo): string[] {
  const out: string[] = [];
  const name = info['backing-filename'];
  if (name !== undefined) {
    const named = resolveBackingPath(imagePath, name, 'anywhere');
    // A name that is a link is allowed by the file it leads to: that is what the folder rule refused.
    out.push(named, reachedPath(named));
  }
  const extents = info['format-specific']?.data.extents;
  if (Array.isArray(extents)) {
    for (const e of extents) {
      const f = (e as { filename?: unknown }).filename;
      if (typeof f === 'string') out.push(nodePath.resolve(nodePath.dirname(imagePath), f));
    }
  }
  return [...new Set(out)];
}
