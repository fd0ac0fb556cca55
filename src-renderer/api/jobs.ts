import type { JobEvent, JobId, JobProgress, JobSpec } from '../../src-shared/api';
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
export function runJob<T>(spec: JobSpec, onProgress?: (p: JobProgress) => void): RunningJob<T> {
  let id: JobId | undefined;
  let cancelAsked = false;
  const early: JobEvent[] = [];
  let settle: ((e: JobEvent) => void) | undefined;
  const result = new Promise<T>((resolve, reject) => {
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
      if (e.type === 'done') resolve(e.result as T);
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

  /** The job's value or its error as an ApiError; undefined when the wizard moved on meanwhile. */
  async follow<T>(gen: number, job: RunningJob<T>): Promise<{ value: T } | { error: ApiError } | undefined> {
    this.running = job as RunningJob<unknown>;
    try {
      const value = await job.result;
      return this.isCurrent(gen) ? { value } : undefined;
    } catch (err) {
      return this.isCurrent(gen) ? { error: toApiError(err) } : undefined;
    } finally {
      if (this.isCurrent(gen)) this.running = null;
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
