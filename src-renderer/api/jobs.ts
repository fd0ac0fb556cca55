/**
 * Jobs from the renderer's side: runJob starts one and follows its events, typed by the contract's
 * JobSpecs → JobResults map; JobSlot is the one job a wizard waits for at a time, following it into the
 * store's job fields (jobState(): progress, startedAt, running, cancelled, error).
 */
import type { JobEvent, JobId, JobKind, JobProgress, JobResults, JobSpec, JobSpecOf } from '../../src-shared/api';
import { api } from './index';
import { toApiError, type ApiError } from './errors';

/** A job started from the UI: its result (or ApiError), its cancel, and the progress as it comes. */
export interface RunningJob<T> {
  result: Promise<T>;
  cancel(): void;
}

/**
 * Starts a job and follows its events. Events can arrive before startJob answers with the id, so they are
 * kept until the id is known; a cancel asked for before that is sent as soon as it is.
 */
export function runJob<K extends JobKind>(spec: JobSpecOf<K> & JobSpec, onProgress?: (p: JobProgress) => void): RunningJob<JobResults[K]> {
  let id: JobId | undefined;
  let cancelAsked = false;
  const early: JobEvent[] = [];
  let settle: ((e: JobEvent) => void) | undefined;
  const result = new Promise<JobResults[K]>((resolve, reject) => {
    const unsubscribe = api.onJobEvent((e) => {
      if (id === undefined) early.push(e);
      else if (e.id === id) settle!(e);
    });
    settle = (e: JobEvent) => {
      if (e.type === 'progress') {
        onProgress?.(e.progress);
        return;
      }
      unsubscribe();
      // The event carries this job's id, so its result is the one its kind gives back.
      if (e.type === 'done') resolve(e.result as JobResults[K]);
      else reject(toApiError(e.error));
    };
    api.startJob(spec).then(
      (jobId) => {
        id = jobId;
        for (const e of early.splice(0)) if (e.id === jobId) settle!(e);
        if (cancelAsked) void api.cancelJob(jobId).catch(() => undefined);
      },
      (err: unknown) => {
        unsubscribe();
        reject(toApiError(err));
      },
    );
  });
  return {
    result,
    cancel() {
      cancelAsked = true;
      if (id !== undefined) void api.cancelJob(id).catch(() => undefined);
    },
  };
}

/** What a store shows of its job: spread jobState() into the store's state; JobSlot keeps it current. */
export interface JobState {
  progress: JobProgress | null;
  /** When the job (or its current phase) started (ms), for the rate and time left. */
  startedAt: number;
  running: boolean;
  /** The last job ended by the user's Cancel (its error is then the ECANCELLED one). */
  cancelled: boolean;
  /** Why the last job failed (a cancel included); stores also put their other failures here. */
  error: ApiError | null;
}

export function jobState(): JobState {
  return { progress: null, startedAt: 0, running: false, cancelled: false, error: null };
}

/** How a job ended: its value, or its error as an ApiError. */
export type JobOutcome<T> = { value: T } | { error: ApiError };

/**
 * The one job a wizard waits for at a time. Each step takes a new generation; answers for a generation the
 * wizard has left (closed, restarted) are dropped, and Cancel reaches whichever job is running.
 */
export class JobSlot {
  private running: RunningJob<unknown> | null = null;
  private generation = 0;

  /** Starts a new step: earlier jobs' answers no longer count. */
  next(): number {
    return ++this.generation;
  }
  isCurrent(gen: number): boolean {
    return gen === this.generation;
  }

  /** Marks `state` as running a job from now (call follow next; run does both). */
  begin(state: JobState): void {
    state.progress = null;
    state.startedAt = Date.now();
    state.running = true;
    state.cancelled = false;
    state.error = null;
  }

  /** begin, then follow. */
  run<K extends JobKind>(state: JobState, gen: number, spec: JobSpecOf<K> & JobSpec): Promise<JobOutcome<JobResults[K]> | undefined> {
    this.begin(state);
    return this.follow(state, gen, spec);
  }

  /**
   * Starts the job of step `gen` and follows it into `state` (progress, a new startedAt when the phase
   * changes, running, and cancelled/error when it ends). Undefined when the wizard moved on meanwhile.
   */
  async follow<K extends JobKind>(state: JobState, gen: number, spec: JobSpecOf<K> & JobSpec): Promise<JobOutcome<JobResults[K]> | undefined> {
    const job = runJob(spec, (p) => {
      if (!this.isCurrent(gen)) return;
      if (state.progress !== null && state.progress.phase !== p.phase) state.startedAt = Date.now();
      state.progress = p;
    });
    this.running = job;
    try {
      const value = await job.result;
      return this.isCurrent(gen) ? { value } : undefined;
    } catch (err) {
      if (!this.isCurrent(gen)) return undefined;
      const error = toApiError(err);
      state.error = error;
      state.cancelled = error.code === 'ECANCELLED';
      return { error };
    } finally {
      if (this.isCurrent(gen)) {
        this.running = null;
        state.running = false;
      }
    }
  }

  cancel(): void {
    this.running?.cancel();
  }

  /** Cancels what runs and drops every answer still to come (the wizard closes). */
  reset(): void {
    this.cancel();
    this.generation++;
  }
}
