/**
 * The Compact wizard: preview (what each partition's file system has freed and how much of it the image still
 * holds, nothing written) → choice: into a new image, or in place keeping a copy → run (progress, cancel) →
 * result with the sizes before and after, and a check of the compacted image where the format has one.
 */
import { defineStore } from 'pinia';
import type { CheckReport, FormatName, MapPicture, SparsifyResult } from '../../src-shared/api';
import { api } from '../api';
import { JobSlot, jobState, type JobOutcome } from '../api/jobs';
import { backIfCancelled, outcomeValue, reportClean } from './workingCopyWizard';

/** Cells of the preview's map: as many as Inspect's, so that the two pictures cut the disk alike. */
export const COMPACT_MAP_BUCKETS = 1024;

const slot = new JobSlot();

export type CompactStep = 'previewing' | 'choose' | 'running' | 'verifying' | 'result' | 'failed';

/** "disk.qcow2" → "disk.compact.qcow2", beside it. */
export function compactTargetName(path: string): string {
  const slash = path.lastIndexOf('/');
  const dot = path.lastIndexOf('.');
  return dot > slash + 1 ? `${path.slice(0, dot)}.compact${path.slice(dot)}` : `${path}.compact`;
}

export const useCompactStore = defineStore('compact', {
  state: () => ({
    active: false,
    path: '',
    step: 'previewing' as CompactStep,
    ...jobState(),
    preview: null as SparsifyResult | null,
    /** The preview's map: the image's allocation, and per cell the data its file systems mark free (what compaction gives back). */
    picture: null as MapPicture | null,
    freeInFs: null as number[] | null,
    where: 'in-place' as 'in-place' | 'new',
    target: '',
    targetFormat: undefined as FormatName | undefined,
    keepCopy: true,
    result: null as SparsifyResult | null,
    verify: null as CheckReport | null,
  }),
  getters: {
    verifyClean: (s) => reportClean(s.verify),
  },
  actions: {
    start(path: string): void {
      this.$reset();
      this.active = true;
      this.path = path;
      this.target = compactTargetName(path);
      void this.runPreview();
    },

    async runPreview(): Promise<void> {
      const gen = slot.next();
      this.step = 'previewing';
      const r = this.value(await slot.run(this, gen, { kind: 'sparsify', path: this.path, mode: 'preview' }));
      if (r === undefined) return;
      this.preview = r;
      // In place would refuse (the preview says why): into a new image is the one way left.
      if (r.inPlaceRefusal) this.where = 'new';
      this.step = 'choose';
      void this.loadMap(gen);
    },

    /** The map for the preview (read only; without it the figures still stand, so a failure just leaves it out). */
    async loadMap(gen: number): Promise<void> {
      const path = this.path;
      try {
        const [picture, free] = await Promise.all([api.mapPicture(path, COMPACT_MAP_BUCKETS), api.insideFree(path, COMPACT_MAP_BUCKETS)]);
        if (!slot.isCurrent(gen) || path !== this.path) return;
        this.picture = picture;
        this.freeInFs = free.buckets;
      } catch {
        // No map: the table says the same in figures.
      }
    },

    async run(canCheck: boolean): Promise<void> {
      const gen = slot.next();
      this.step = 'running';
      const spec = this.where === 'new'
        ? ({ kind: 'sparsify', path: this.path, mode: 'new', target: this.target.trim(), ...(this.targetFormat ? { targetFormat: this.targetFormat } : {}) } as const)
        : ({ kind: 'sparsify', path: this.path, mode: 'in-place', keepCopy: this.keepCopy } as const);
      const outcome = await slot.run(this, gen, spec);
      // A cancelled compaction changed nothing: back to the choice.
      if (backIfCancelled(this, outcome, 'choose')) return;
      const r = this.value(outcome);
      if (r === undefined) return;
      this.result = r;
      if (!canCheck) {
        this.step = 'result';
        return;
      }
      this.step = 'verifying';
      const checked = this.value(await slot.run(this, slot.next(), { kind: 'check', path: this.where === 'new' ? this.target.trim() : this.path }));
      if (checked === undefined) return;
      this.verify = checked;
      this.step = 'result';
    },

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
