/**
 * The snapshot browser: the snapshots of one qcow2 image as a timeline ending in "now", the map of the one
 * selected, the difference of two selected (or one and now) drawn over it, the space each holds alone, and
 * the actions — take, revert, delete, export — each a job with progress.
 */
import { defineStore } from 'pinia';
import type { MapPicture, SnapshotDiff, SnapshotInfo, SnapshotListing } from '../../src-shared/api';
import { api, toApiError, type ApiError } from '../api';
import { JobSlot, jobState } from '../api/jobs';

const slot = new JobSlot();

/**
 * Reads of the image under way (listing, space, maps). Each holds the image's shared lock while it runs, and a
 * lock taken by this program's own reader refuses its own writer as it would another program's, so an action
 * waits for them before it starts.
 */
const reads = new Set<Promise<unknown>>();
function reading<T>(p: Promise<T>): Promise<T> {
  reads.add(p);
  const forget = () => reads.delete(p);
  p.then(forget, forget);
  return p;
}

/** "Now" in a selection: the image's current state. */
export const NOW = 'now';

/** Buckets of the maps drawn here (as the Inspect map). */
export const MAP_BUCKETS = 512;

export type SnapshotAction = 'take' | 'revert' | 'delete';

/** A default name for a new snapshot: the date and time, as a person would write it (2026-12-01 17:42:05). */
export function defaultSnapshotName(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export const useSnapshotsStore = defineStore('snapshots', {
  state: () => ({
    active: false,
    path: '',
    listing: null as SnapshotListing | null,
    /** Bytes each snapshot holds alone (by id); null while counted or when it could not be. */
    space: null as Record<string, number> | null,
    /** Up to two selected states: snapshot ids or NOW. */
    selected: [] as string[],
    picture: null as MapPicture | null,
    diff: null as SnapshotDiff | null,
    /** The action waiting for its confirmation, or running. */
    pending: null as { action: SnapshotAction; id?: string } | null,
    /** The running action; `error` also holds a failure to draw the maps. */
    ...jobState(),
    /** Revert's "take a snapshot of the current state first" box, on by default. */
    saveFirst: true,
    newName: '',
    /** One line on what the last action did. */
    done: '',
    loadError: null as ApiError | null,
  }),
  getters: {
    snapshotById: (s) => (id: string): SnapshotInfo | undefined => s.listing?.snapshots.find((x) => x.id === id),
  },
  actions: {
    async open(path: string): Promise<void> {
      slot.reset();
      this.$reset();
      this.active = true;
      this.path = path;
      await this.reload();
    },
    close(): void {
      slot.reset();
      this.$reset();
    },

    /** Reads the listing again (after an action) and what hangs on it: the space, the selection's drawing. */
    async reload(): Promise<void> {
      this.loadError = null;
      try {
        this.listing = await reading(api.snapshots(this.path));
      } catch (err) {
        this.loadError = toApiError(err);
        return;
      }
      const ids = new Set([...this.listing.snapshots.map((s) => s.id), NOW]);
      this.selected = this.selected.filter((id) => ids.has(id));
      if (this.selected.length === 0) this.selected = [this.listing.snapshots.length ? this.listing.snapshots[this.listing.snapshots.length - 1].id : NOW];
      this.space = null;
      void reading(api.snapshotSpace(this.path)).then(
        (space) => (this.space = space),
        () => (this.space = null),
      );
      await this.draw();
    },

    /** Clicking a state: selects it alone, or (with `add`) as the second of a pair to compare. */
    async select(id: string, add = false): Promise<void> {
      if (add && this.selected.length >= 1 && !this.selected.includes(id)) this.selected = [this.selected[this.selected.length - 1], id];
      else this.selected = [id];
      await this.draw();
    },

    async draw(): Promise<void> {
      const [a, b] = this.selected;
      this.picture = null;
      this.diff = null;
      if (!this.pending) this.error = null;
      if (a === undefined) return;
      try {
        // The map under the drawing is the first selected state's (the image's own map for "now").
        this.picture = await reading(a === NOW ? api.mapPicture(this.path, MAP_BUCKETS) : api.snapshotMap(this.path, a, MAP_BUCKETS));
        if (b !== undefined) {
          // The difference is from the older to the newer; "now" is always the newer.
          const [from, to] = a === NOW ? [b, undefined] : [a, b === NOW ? undefined : b];
          this.diff = await reading(api.snapshotDiff(this.path, from, to ?? null, MAP_BUCKETS));
        }
      } catch (err) {
        this.error = toApiError(err);
      }
    },

    ask(action: SnapshotAction, id?: string): void {
      this.pending = { action, id };
      this.error = null;
      this.done = '';
      if (action === 'take') this.newName = defaultSnapshotName();
      if (action === 'revert') {
        this.saveFirst = true;
        this.newName = `before revert ${defaultSnapshotName()}`;
      }
    },
    dismiss(): void {
      if (!this.running) this.pending = null;
    },

    async confirm(): Promise<void> {
      const p = this.pending;
      if (!p || this.running) return;
      const gen = slot.next();
      const name = this.newName.trim();
      const spec =
        p.action === 'take'
          ? ({ kind: 'snapshot-create', path: this.path, name } as const)
          : p.action === 'revert'
            ? ({ kind: 'snapshot-apply', path: this.path, snapshot: p.id!, ...(this.saveFirst ? { saveCurrentAs: name } : {}) } as const)
            : ({ kind: 'snapshot-delete', path: this.path, snapshot: p.id! } as const);
      const label = p.id ? this.snapshotById(p.id)?.name ?? p.id : name;
      // Running from the click on (the buttons are disabled), though the job starts once the reads are done.
      slot.begin(this);
      await Promise.allSettled([...reads]);
      const outcome = await slot.follow(this, gen, spec);
      if (!outcome || 'error' in outcome) return;
      this.pending = null;
      this.done =
        p.action === 'take'
          ? `Snapshot “${name}” taken.`
          : p.action === 'revert'
            ? `Reverted to “${label}”.${this.saveFirst ? ` The state before was kept as “${name}”.` : ''}`
            : `Snapshot “${label}” deleted.`;
      if (p.action === 'revert') this.selected = [NOW];
      await this.reload();
    },
    cancel(): void {
      slot.cancel();
    },
  },
});
