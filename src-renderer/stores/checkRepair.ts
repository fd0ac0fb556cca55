/**
 * The Check & Repair wizard: check (progress, cancel) → findings in plain words → repair on a copy, with the
 * image kept as it was if asked (progress, cancel) → check again and say what is left.
 */
import { defineStore } from 'pinia';
import type { CheckReport, RepairResult } from '../../src-shared/api';
import { JobSlot, jobState, type JobOutcome } from '../api/jobs';
import { backIfCancelled, outcomeValue, reportClean } from './workingCopyWizard';

const slot = new JobSlot();

export type CheckStep = 'checking' | 'findings' | 'repairing' | 'rechecking' | 'result' | 'failed';

export const useCheckRepairStore = defineStore('checkRepair', {
  state: () => ({
    active: false,
    path: '',
    step: 'checking' as CheckStep,
    /** The running check or repair (progress, startedAt, running); `cancelled` when the user cancelled the repair: the image is as it was. */
    ...jobState(),
    report: null as CheckReport | null,
    mode: 'all' as 'leaks' | 'all',
    keepCopy: true,
    repair: null as RepairResult | null,
    final: null as CheckReport | null,
    /** The new file the last repair wrote, when the image itself could not be written ('' otherwise). */
    repairedInto: '',
  }),
  getters: {
    clean: (s) => reportClean(s.report),
    finalClean: (s) => reportClean(s.final),
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
      const path = step === 'rechecking' && this.repairedInto ? this.repairedInto : this.path;
      const report = this.value(await slot.run(this, gen, { kind: 'check', path }));
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

    /** The repair; into `target` (a new file, the image only read) when the image itself cannot be written. */
    async runRepair(target?: string): Promise<void> {
      const gen = slot.next();
      this.step = 'repairing';
      this.repairedInto = target ?? '';
      const outcome = await slot.run(this, gen, { kind: 'repair', path: this.path, mode: this.mode, keepCopy: target ? false : this.keepCopy, ...(target ? { target } : {}) });
      // A cancelled repair changed nothing: back to the findings, which still hold.
      if (backIfCancelled(this, outcome, 'findings')) return;
      const result: RepairResult | undefined = this.value(outcome);
      if (result === undefined) return;
      this.repair = result;
      await this.check('rechecking');
    },

    /** A job's value; undefined when it failed (the wizard then shows its error), or the wizard moved on. */
    value<T>(outcome: JobOutcome<T> | undefined): T | undefined {
      return outcomeValue(this, outcome);
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
