/**
 * Runs a job to its end through any face that has an event stream and a start call (the JobManager, the api,
 * the host's socket client): events that arrive before the start call has returned the job's id are kept and
 * matched once it has, so a job that ends at once is not missed.
 */
import type { JobEvent } from '../src-shared/api';

export type JobEnd = Exclude<JobEvent, { type: 'progress' }>;

export function jobEnd(onEvent: (listener: (e: JobEvent) => void) => () => void, start: () => string | Promise<string>): Promise<JobEnd> {
  return new Promise((resolve, reject) => {
    let id: string | undefined;
    const early: JobEvent[] = [];
    const finish = (e: JobEvent) => {
      if (e.type === 'progress') return;
      off();
      resolve(e);
    };
    const off = onEvent((e) => {
      if (id === undefined) early.push(e);
      else if (e.id === id) finish(e);
    });
    Promise.resolve()
      .then(start)
      .then((jobId) => {
        id = jobId;
        for (const e of early) if (e.id === jobId) finish(e);
      }, (err: unknown) => {
        off();
        reject(err);
      });
  });
}
