/**
 * "Merge into base…" (commit) and "Change base…" (rebase) on the Inspect page: what would change is shown
 * first (which files are written, which only read), then the job runs with progress and cancel.
 */
import { defineStore } from 'pinia';
import type { CommitPlan, ImageInfo, RebasePlan } from '../../src-shared/api';
import { api, toApiError } from '../api';
import { JobSlot, jobState } from '../api/jobs';

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
    /** The running commit or rebase; `error` also holds a failure to make the plan. */
    ...jobState(),
    done: '',
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
      const gen = slot.next();
      slot.begin(this);
      const format = info['backing-image']?.format ?? (await api.inspect(full).catch((err: unknown) => void (this.error = toApiError(err))))?.format;
      if (format === undefined) {
        this.running = false;
        return false;
      }
      const outcome = await slot.follow(this, gen, { kind: 'rebase', path: info.filename, newBacking: recorded, newBackingFormat: format, unsafe: true });
      if (!outcome || 'error' in outcome) return false;
      this.done = `The changed base ${full} is now accepted: its new date and size (or content ID) are recorded in the image.`;
      return true;
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
              ...(this.rebasePlan?.newBackingFormat ? { newBackingFormat: this.rebasePlan.newBackingFormat } : {}),
            } as const);
      const outcome = await slot.run(this, gen, spec);
      if (!outcome || 'error' in outcome) return false;
      const value = outcome.value;
      // A commit names the base it merged into; a rebase gives back only what it copied.
      this.done =
        'base' in value
          ? `Merged into ${value.base}.${value.emptied ? ' The image is now empty: its data lives in the base.' : ''}`
          : `The image now stands on ${this.rebasePlan?.newBacking ?? this.newBase}.`;
      this.op = null;
      return true;
    },
  },
});
