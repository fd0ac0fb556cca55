import { randomUUID } from 'node:crypto';
import type { CommitResult, ConvertResult, JobEvent, JobId, JobSpec } from '../../src-shared/api';
import { commitImage } from './commit';
import { rebaseImage } from './rebase';
import { toDiskError } from '../block/errors';
import { inspectImage } from './info';
import { mapPicture } from './map';
import { createImage } from './create';
import { checkImage } from './check';
import { repairImage } from './repair';
import { convertImage } from './convert';
import { convertKeepingSnapshots } from './convert-snapshots';
import { compareImages } from './compare';
import { createNamedSnapshot, deleteSnapshot, revertToSnapshot } from './snapshot';
import { promises as fsp } from 'node:fs';
import type { BackingPolicy } from '../block/types';

type Listener = (e: JobEvent) => void;

/**
 * Runs long work in the background for the UI: each job gets an id, reports progress {done,total,phase},
 * and can be cancelled. Knows nothing of Electron or WebSockets; the bridges subscribe to its events.
 */
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
    const progress = (phase: string) => (done: number, total: number) => {
      const now = Date.now();
      if (done < total && now - last < 100) return;
      last = now;
      this.emit({ id, type: 'progress', progress: { done, total, phase } });
    };
    void this.run(spec, ctl.signal, progress)
      .then((result) => this.emit({ id, type: 'done', result }))
      .catch((err) => this.emit({ id, type: 'failed', error: toDiskError(err).toDto() }))
      .finally(() => this.running.delete(id));
    return id;
  }

  cancel(id: JobId): void {
    this.running.get(id)?.abort();
  }

  private async run(spec: JobSpec, signal: AbortSignal, progress: (phase: string) => (d: number, t: number) => void): Promise<unknown> {
    const backingPolicy = this.backingPolicy;
    switch (spec.kind) {
      case 'inspect':
        return inspectImage(spec.path, { backingChain: true, backingPolicy });
      case 'map':
        return mapPicture(spec.path, spec.buckets, { backingPolicy, signal, onProgress: progress('map') });
      case 'create':
        return createImage({ path: spec.path, format: spec.format, size: spec.size, options: spec.options, backingFile: spec.backing, backingFormat: spec.backingFormat });
      case 'check':
        return checkImage({ path: spec.path, repair: spec.repair, signal, onProgress: progress(spec.repair ? 'repair' : 'check') });
      case 'repair':
        return repairImage({ path: spec.path, mode: spec.mode, keepCopy: spec.keepCopy, signal, onProgress: (phase, d, t) => progress(phase)(d, t) });
      case 'compare':
        return compareImages({ a: spec.a, b: spec.b, backingPolicy, signal, onProgress: progress('compare') });
      case 'convert':
        await (spec.keepSnapshots ? convertKeepingSnapshots : convertImage)({
          source: spec.source,
          target: spec.target,
          targetFormat: spec.targetFormat,
          options: spec.options,
          compress: spec.compress,
          sourceSnapshot: spec.snapshot,
          keepSnapshots: spec.keepSnapshots,
          backingPolicy,
          signal,
          onProgress: progress('convert'),
        });
        // What the new image takes on disk, for the wizard's before/after.
        return { target: spec.target, targetBytes: ((await fsp.stat(spec.target)).blocks ?? 0) * 512 } satisfies ConvertResult;
      case 'snapshot-create':
        return createNamedSnapshot(spec.path, spec.name);
      case 'snapshot-apply':
        return revertToSnapshot({ path: spec.path, snapshot: spec.snapshot, saveCurrentAs: spec.saveCurrentAs, signal });
      case 'snapshot-delete':
        return deleteSnapshot(spec.path, spec.snapshot);
      case 'commit':
        return commitImage({ path: spec.path, keepOverlay: spec.keepOverlay ?? false, backingPolicy, signal, onProgress: progress('commit') }) satisfies Promise<CommitResult>;
      case 'rebase':
        return rebaseImage({
          path: spec.path,
          newBacking: spec.newBacking,
          newBackingFormat: spec.newBackingFormat,
          unsafe: spec.unsafe ?? false,
          backingPolicy,
          signal,
          onProgress: progress('rebase'),
        });
    }
  }
}
