import { defineStore } from 'pinia';
import type { CheckReport, JobProgress, RepairResult } from '../../src-shared/api';
import type { ApiError } from '../api';
import { JobSlot, runJob, type RunningJob } from '../api/jobs';

/**
 * The Check & Repair wizard: check (progress, cancel) → findings in plain words → repair on a copy, with the
 * image kept as it was if asked (progress, cancel) → check again and say what is left.
 */
const slot = new JobSlot();

export type CheckStep = 'checking' | 'findings' | 'repairing' | 'rechecking' | 'result' | 'failed';

export const useCheckRepairStore = defineStore('checkRepair', {
  state: () => ({
    active: false,
    path: '',
    step: 'checking' as CheckStep,
    progress: null as JobProgress | null,
    /** When the running step started (ms), for the rate and time left. */
    startedAt: 0,
    report: null as CheckReport | null,
    mode: 'all' as 'leaks' | 'all',
    keepCopy: true,
    repair: null as RepairResult | null,
    final: null as CheckReport | null,
    error: null as ApiError | null,
    /** Set when the user cancelled the repair: the image is as it was. */
    cancelled: false,
  }),
  getters: {
    clean: (s) => !!s.report && s.report.corruptions === 0 && s.report.leaks === 0 && s.report['check-errors'] === 0,
    finalClean: (s) => !!s.final && s.final.corruptions === 0 && s.final.leaks === 0 && s.final['check-errors'] === 0,
  },
  actions: {
    /** Opens the wizard on an image and runs the check at once. */
    start(path: string): void {
      this.$reset();
      this.active = true;
      this.path = path;
      void this.check('checking');
    },

    async check(step: 'checking' | 'rechecking'): Promise<void> {
      const gen = slot.next();
      this.step = step;
      this.error = null;
      const report = await this.follow<CheckReport>(gen, runJob<CheckReport>({ kind: 'check', path: this.path }, (p) => this.onProgress(gen, p)));
      if (report === undefined) return;
      if (step === 'checking') {
        this.report = report;
        // Leaks alone: freeing them is all there is to do; anything worse needs the full repair.
        this.mode = report.corruptions > 0 || report['check-errors'] > 0 ? 'all' : 'leaks';
        this.step = 'findings';
      } else {
        this.final = report;
        this.step = 'result';
      }
    },

    async runRepair(): Promise<void> {
      const gen = slot.next();
      this.step = 'repairing';
      this.cancelled = false;
      this.error = null;
      const result = await this.follow<RepairResult>(
        gen,
        runJob<RepairResult>({ kind: 'repair', path: this.path, mode: this.mode, keepCopy: this.keepCopy }, (p) => this.onProgress(gen, p)),
        () => {
          // A cancelled repair changed nothing: back to the findings, which still hold.
          this.cancelled = true;
          this.step = 'findings';
        },
      );
      if (result === undefined) return;
      this.repair = result;
      await this.check('rechecking');
    },

    /** Runs one job of the wizard; undefined when it failed, was cancelled or the wizard moved on. */
    async follow<T>(gen: number, job: RunningJob<T>, onCancelled?: () => void): Promise<T | undefined> {
      this.progress = null;
      this.startedAt = Date.now();
      const r = await slot.follow(gen, job);
      if (!r) return undefined;
      if ('value' in r) return r.value;
      if (r.error.code === 'ECANCELLED' && onCancelled) onCancelled();
      else {
        this.error = r.error;
        this.step = 'failed';
      }
      return undefined;
    },

    onProgress(gen: number, p: JobProgress): void {
      if (!slot.isCurrent(gen)) return;
      if (this.progress?.phase !== p.phase) this.startedAt = Date.now();
      this.progress = p;
    },

    cancel(): void {
      slot.cancel();
    },

    close(): void {
      slot.reset();
      this.$reset();
    },
  },
});
