/**
 * Runs long work in the background for the UI: each job gets an id, reports progress {done, total, phase}, and
 * can be cancelled. One handler per kind of job, typed by the contract's JobSpecs → JobResults map, so a
 * job's result is the type the renderer expects. Knows nothing of Electron or WebSockets; the bridges
 * subscribe to its events.
 */
import { randomUUID } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import type { JobEvent, JobId, JobKind, JobPhase, JobResults, JobSpec, JobSpecOf } from '../../src-shared/api';
import { DiskError, toDiskError } from '../block/errors';
import type { BackingPolicy } from '../block/types';
import { checkImage } from './check';
import { commitImage } from './commit';
import { compareImages } from './compare';
import { checksumImage } from './checksum';
import { convertImage } from './convert';
import { convertKeepingSnapshots } from './convert-snapshots';
import { planForSource } from './targets';
import { createImage, existingRule } from './create';
import { inspectImage } from './info';
import { mapPicture } from './map';
import { rebaseImage } from './rebase';
import { repairImage } from './repair';
import { createNamedSnapshot, deleteSnapshot, revertToSnapshot } from './snapshot';
import { copyOutNew } from './inside';
import { sparsify } from './sparsify';
import { compactViaCopy, copySwapRefusal } from './sparsify/swap';

type Listener = (e: JobEvent) => void;

/** What a handler is given besides its spec. */
interface JobContext {
  backingPolicy: BackingPolicy;
  signal: AbortSignal;
  /** The progress callback of one phase (throttled by the manager). */
  progress: (phase: JobPhase) => (done: number, total: number) => void;
}

type Handlers = { [K in JobKind]: (spec: JobSpecOf<K>, ctx: JobContext) => Promise<JobResults[K]> };

const HANDLERS: Handlers = {
  inspect: (spec, { backingPolicy }) => inspectImage(spec.path, { backingChain: true, backingPolicy }),
  map: (spec, { backingPolicy, signal, progress }) => mapPicture(spec.path, spec.buckets, { backingPolicy, signal, onProgress: progress('map') }),
  create: (spec) => createImage({ path: spec.path, format: spec.format, size: spec.size, options: spec.options, backingFile: spec.backing, backingFormat: spec.backingFormat, existing: existingRule(spec) }),
  check: (spec, { backingPolicy, signal, progress }) => checkImage({ path: spec.path, repair: spec.repair, backingPolicy, signal, onProgress: progress(spec.repair ? 'repair' : 'check') }),
  repair: (spec, { backingPolicy, signal, progress }) => repairImage({ path: spec.path, mode: spec.mode, keepCopy: spec.keepCopy, target: spec.target, backingPolicy, signal, onProgress: (phase, d, t) => progress(phase)(d, t) }),
  compare: (spec, { backingPolicy, signal, progress }) => compareImages({ a: spec.a, b: spec.b, formatB: spec.formatB, snapshotA: spec.snapshotA, backingPolicy, signal, onProgress: progress('compare') }),
  checksum: (spec, { backingPolicy, signal, progress }) => checksumImage({ path: spec.path, format: spec.format, backingPolicy, signal, onProgress: progress('checksum') }),
  async convert(spec, { backingPolicy, signal, progress }) {
    const removed: string[] = [];
    // For a hypervisor or cloud, the target's plan decides the format, options and size (services/targets.ts).
    const plan = spec.hostTarget ? await planForSource(spec.source, spec.hostTarget, spec.hostChoice ?? {}, { backingPolicy }) : undefined;
    if (plan && plan.format !== spec.targetFormat) throw new DiskError('EINVAL', `a disk for ${spec.hostTarget} is ${plan.format}, not ${spec.targetFormat}`);
    await (spec.keepSnapshots ? convertKeepingSnapshots : convertImage)({
      source: spec.source,
      target: spec.target,
      targetFormat: spec.targetFormat,
      options: plan ? plan.options : spec.options,
      targetSize: plan?.size,
      compress: spec.compress,
      sourceSnapshot: spec.snapshot,
      keepSnapshots: spec.keepSnapshots,
      backingPolicy,
      signal,
      onProgress: progress('convert'),
      onStaleRemoved: (p) => removed.push(p),
    });
    // What the new image takes on disk, for the wizard's before/after.
    return { target: spec.target, targetBytes: ((await fsp.stat(spec.target)).blocks ?? 0) * 512, ...(removed.length ? { removedTemporaries: removed } : {}) };
  },
  async 'snapshot-create'(spec) {
    await createNamedSnapshot(spec.path, spec.name);
    return null;
  },
  async 'snapshot-apply'(spec, { signal }) {
    await revertToSnapshot({ path: spec.path, snapshot: spec.snapshot, saveCurrentAs: spec.saveCurrentAs, signal });
    return null;
  },
  async 'snapshot-delete'(spec) {
    await deleteSnapshot(spec.path, spec.snapshot);
    return null;
  },
  commit: (spec, { backingPolicy, signal, progress }) => commitImage({ path: spec.path, keepOverlay: spec.keepOverlay ?? false, backingPolicy, signal, onProgress: progress('commit') }),
  rebase: (spec, { backingPolicy, signal, progress }) =>
    rebaseImage({
      path: spec.path,
      newBacking: spec.newBacking,
      newBackingFormat: spec.newBackingFormat,
      unsafe: spec.unsafe ?? false,
      backingPolicy,
      signal,
      onProgress: progress('rebase'),
    }),
  'inside-copy': (spec, { backingPolicy, signal, progress }) =>
    copyOutNew({ path: spec.path, partition: spec.partition, inner: spec.inner, dest: spec.target, backingPolicy, signal, onProgress: progress('inside-copy') }),
  sparsify(spec, { backingPolicy, signal, progress }) {
    if (spec.mode === 'in-place') return compactViaCopy({ path: spec.path, keepCopy: spec.keepCopy ?? true, signal, onProgress: (phase, d, t) => progress(phase)(d, t) });
    if (spec.mode === 'new' && !spec.target) throw new DiskError('EINVAL', 'a compaction into a new image needs the new image\'s name');
    const run = sparsify({ source: spec.path, target: spec.mode === 'new' ? spec.target : undefined, targetFormat: spec.targetFormat, dryRun: spec.mode === 'preview', backingPolicy, signal, onProgress: progress('sparsify') });
    if (spec.mode !== 'preview') return run;
    // The app compacts in place through a working copy (copy-swap), which refuses an image of several files: the
    // preview says so as well, so that "in place" is not offered only to be refused after the click.
    return run.then(async (r) => {
      r.inPlaceRefusal ??= await copySwapRefusal(spec.path);
      return r;
    });
  },
};

/** Runs one job by its kind's handler. */
function runJobSpec<K extends JobKind>(spec: JobSpecOf<K>, ctx: JobContext): Promise<JobResults[K]> {
  const handler: Handlers[K] = HANDLERS[spec.kind];
  return handler(spec, ctx);
}

export class JobManager {
  private readonly running = new Map<JobId, AbortController>();
  private readonly listeners = new Set<Listener>();
  constructor(private readonly backingPolicy: BackingPolicy = 'inside-folder') {}

  onEvent(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(e: JobEvent): void {
    for (const l of this.listeners) l(e);
  }

  start(spec: JobSpec): JobId {
    const id = randomUUID();
    const ctl = new AbortController();
    this.running.set(id, ctl);
    // Progress events are throttled: at most one per 100 ms per job, plus the last one.
    let last = 0;
    const progress = (phase: JobPhase) => (done: number, total: number) => {
      const now = Date.now();
      if (done < total && now - last < 100) return;
      last = now;
      this.emit({ id, type: 'progress', progress: { done, total, phase } });
    };
    void runJobSpec(spec, { backingPolicy: this.backingPolicy, signal: ctl.signal, progress })
      .then((result) => this.emit({ id, type: 'done', result }))
      .catch((err) => this.emit({ id, type: 'failed', error: toDiskError(err).toDto() }))
      .finally(() => this.running.delete(id));
    return id;
  }

  cancel(id: JobId): void {
    this.running.get(id)?.abort();
  }
}
