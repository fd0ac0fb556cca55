import type { JobEvent, JobId, JobProgress, JobSpec } from '../../src-shared/api';
import { api } from './index';
import { toApiError } from './errors';

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
