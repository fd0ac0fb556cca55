import { defineStore } from 'pinia';
import type { CommitPlan, CommitResult, FormatName, ImageInfo, JobProgress, RebasePlan } from '../../src-shared/api';
import { api, toApiError, type ApiError } from '../api';
import { JobSlot, runJob } from '../api/jobs';

/**
 * "Merge into base…" (commit) and "Change base…" (rebase) on the Inspect page: what would change is shown
 * first (which files are written, which only read), then the job runs with progress and cancel.
 */
const slot = new JobSlot();

export type BackingOp = 'commit' | 'rebase';

/** `path` relative to the folder of `image` when it lies in that folder (what people write in a chain), else as given. */
export function nameFor(image: string, path: string): string {
  const cut = Math.max(image.lastIndexOf('/'), image.lastIndexOf('\\'));
  const dir = image.slice(0, cut + 1);
  const rest = path.slice(dir.length);
  return dir && path.startsWith(dir) && !rest.includes('/') && !rest.includes('\\') ? rest : path;
}

export const useBackingOpsStore = defineStore('backingOps', {
  state: () => ({
    op: null as BackingOp | null,
    path: '',
    commitPlan: null as CommitPlan | null,
    /** Commit's -d: leave the image as it is after merging. */
    keepOverlay: false,
    newBase: '',
    rebasePlan: null as RebasePlan | null,
    /** The new base text the plan was made for. */
    plannedFor: '',
    running: false,
    startedAt: 0,
    progress: null as JobProgress | null,
    done: '',
    error: null as ApiError | null,
  }),
  actions: {
    async ask(op: BackingOp, path: string): Promise<void> {
      slot.reset();
      this.$reset();
      this.op = op;
      this.path = path;
      if (op === 'commit') {
        try {
          this.commitPlan = await api.commitPlan(path);
        } catch (err) {
          this.error = toApiError(err);
        }
      }
    },
    async planRebase(): Promise<void> {
      const base = this.newBase.trim();
      // Leaving the field (a click on "Change base" does) must not throw away the plan the click confirms.
      if (base === this.plannedFor && (this.rebasePlan || this.error)) return;
      this.plannedFor = base;
      this.rebasePlan = null;
      this.error = null;
      if (!base) return;
      try {
        const plan = await api.rebasePlan(this.path, base);
        if (this.plannedFor === base) this.rebasePlan = plan;
      } catch (err) {
        this.error = toApiError(err);
      }
    },
    dismiss(): void {
      if (this.running) return;
      slot.reset();
      this.$reset();
    },
    cancel(): void {
      slot.cancel();
    },
    /**
     * The user's "accept the changed base": the backing file changed since the image was made against it (a UML
     * COW file's recorded date and size, a VMDK child's parent CID). Recording the base as it is now — a rebase
     * that rewrites the name only, to the same file — makes the pair readable again, as `uml_moo`/VMware want.
     */
    async acceptChangedBase(info: ImageInfo): Promise<boolean> {
      const recorded = info['backing-filename'];
      const full = info['full-backing-filename'];
      if (recorded === undefined || full === undefined || this.running) return false;
      this.$reset();
      this.path = info.filename;
      this.running = true;
      this.startedAt = Date.now();
      try {
        const format = info['backing-image']?.format ?? (await api.inspect(full)).format;
        await runJob<unknown>({ kind: 'rebase', path: info.filename, newBacking: recorded, newBackingFormat: format, unsafe: true }).result;
        this.done = `The changed base ${full} is now accepted: its new date and size (or content ID) are recorded in the image.`;
        return true;
      } catch (err) {
        this.error = toApiError(err);
        return false;
      } finally {
        this.running = false;
      }
    },
    /** Runs the confirmed operation; true when it completed (the image is then read again by the caller). */
    async confirm(): Promise<boolean> {
      if (this.running || !this.op) return false;
      const gen = slot.next();
      const spec =
        this.op === 'commit'
          ? ({ kind: 'commit', path: this.path, keepOverlay: this.keepOverlay } as const)
          : ({
              kind: 'rebase',
              path: this.path,
              newBacking: nameFor(this.path, this.rebasePlan?.newBacking ?? this.newBase.trim()),
              ...(this.rebasePlan?.newBackingFormat ? { newBackingFormat: this.rebasePlan.newBackingFormat as FormatName } : {}),
            } as const);
      this.running = true;
      this.startedAt = Date.now();
      this.progress = null;
      this.error = null;
      const outcome = await slot.follow(
        gen,
        runJob<CommitResult | { copiedBytes: number }>(spec, (p) => {
          if (slot.isCurrent(gen)) this.progress = p;
        }),
      );
      this.running = false;
      if (!outcome) return false;
      if ('error' in outcome) {
        this.error = outcome.error;
        return false;
      }
      this.done =
        this.op === 'commit'
          ? `Merged into ${(outcome.value as CommitResult).base}.${(outcome.value as CommitResult).emptied ? ' The image is now empty: its data lives in the base.' : ''}`
          : `The image now stands on ${this.rebasePlan?.newBacking ?? this.newBase}.`;
      this.op = null;
      return true;
    },
  },
});
