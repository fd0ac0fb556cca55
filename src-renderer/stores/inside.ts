/**
 * Inside the disk (issue 22), on Inspect: the partition table with each file system, the partition whose files
 * are browsed (its folder, sorted as the person asked), "Save a copy…" of a file or folder as an 'inside-copy'
 * job, and the map's "free in the file system" layer. Answers for an image no longer shown are dropped.
 */
import { defineStore } from 'pinia';
import type { DiskLayout, InsideCopyResult, InsideEntry, InsideFreePicture, InsideListing, InsidePartition, TargetInfo } from '../../src-shared/api';
import { api, toApiError, type ApiError } from '../api';
import { JobSlot, jobState } from '../api/jobs';
import { sortEntries, type SortKey } from '../components/inside/entries';

export { joinInner, type SortKey } from '../components/inside/entries';

const slot = new JobSlot();

/** The folder beside `imagePath` joined with `name`, in the path's own separator. */
function besideImage(imagePath: string, name: string): string {
  const cut = Math.max(imagePath.lastIndexOf('/'), imagePath.lastIndexOf('\\'));
  const sep = cut >= 0 ? imagePath[cut] : '/';
  return cut >= 0 ? `${imagePath.slice(0, cut)}${sep}${name}` : name;
}

export const useInsideStore = defineStore('inside', {
  state: () => ({
    path: '',
    layout: null as DiskLayout | null,
    status: 'idle' as 'idle' | 'loading' | 'ready' | 'failed',
    loadError: null as ApiError | null,
    /** The partition whose files are shown (its number), or null. */
    browsing: null as number | null,
    /** The partition pointed at on the bar or in the table: its cells are outlined on the map. */
    highlighted: null as number | null,
    dir: '/',
    listing: null as InsideListing | null,
    listStatus: 'idle' as 'idle' | 'loading' | 'ready' | 'failed',
    listError: null as ApiError | null,
    sortKey: 'name' as SortKey,
    ascending: true,
    /** The map shows "allocated in the image but free in the file system". */
    showFree: false,
    free: null as InsideFreePicture | null,
    freeStatus: 'idle' as 'idle' | 'loading' | 'ready' | 'failed',
    freeError: null as ApiError | null,
    /** "Save a copy…": the entry being saved (its path inside the disk), where to, and the job. */
    save: null as null | { inner: string; entry: InsideEntry; step: 'choose' | 'copying' | 'done' | 'failed' },
    targetPath: '',
    target: null as TargetInfo | null,
    ...jobState(),
    result: null as InsideCopyResult | null,
    generation: 0,
  }),
  getters: {
    partition(state): InsidePartition | null {
      return state.layout?.partitions.find((p) => p.number === state.browsing) ?? null;
    },
    sorted(state): InsideEntry[] {
      return state.listing ? sortEntries(state.listing.entries, state.sortKey, state.ascending) : [];
    },
  },
  actions: {
    /** Reads the partition table of `path`, afresh: the image may have changed (a revert, a repair) since it was last read. */
    async load(path: string): Promise<void> {
      slot.reset();
      this.$reset();
      const gen = ++this.generation;
      this.path = path;
      this.status = 'loading';
      try {
        const layout = await api.partitions(path);
        if (gen !== this.generation) return;
        this.layout = layout;
        this.status = 'ready';
      } catch (err) {
        if (gen !== this.generation) return;
        this.loadError = toApiError(err);
        this.status = 'failed';
      }
    },
    close(): void {
      slot.reset();
      this.generation++;
      this.$reset();
    },
    /** Opens a partition's file browser at its root. */
    async browse(number: number): Promise<void> {
      this.browsing = number;
      this.closeSave();
      await this.open('/');
    },
    stopBrowsing(): void {
      this.browsing = null;
      this.listing = null;
      this.closeSave();
    },
    async open(dir: string): Promise<void> {
      if (this.browsing === null) return;
      const gen = this.generation;
      const number = this.browsing;
      this.dir = dir;
      this.listStatus = 'loading';
      this.listError = null;
      try {
        const listing = await api.insideList(this.path, number, dir);
        if (gen !== this.generation || number !== this.browsing || dir !== this.dir) return;
        this.listing = listing;
        this.listStatus = 'ready';
      } catch (err) {
        if (gen !== this.generation || number !== this.browsing || dir !== this.dir) return;
        this.listError = toApiError(err);
        this.listStatus = 'failed';
      }
    },
    sortBy(key: SortKey): void {
      if (this.sortKey === key) this.ascending = !this.ascending;
      else {
        this.sortKey = key;
        this.ascending = true;
      }
    },
    /** Turns the map's "free in the file system" layer on or off (read the first time it is shown). */
    async setShowFree(on: boolean, buckets: number): Promise<void> {
      this.showFree = on;
      if (!on || this.free || this.freeStatus === 'loading') return;
      const gen = this.generation;
      this.freeStatus = 'loading';
      this.freeError = null;
      try {
        const free = await api.insideFree(this.path, buckets);
        if (gen !== this.generation) return;
        this.free = free;
        this.freeStatus = 'ready';
      } catch (err) {
        if (gen !== this.generation) return;
        this.freeError = toApiError(err);
        this.freeStatus = 'failed';
      }
    },
    /** "Save a copy…" of an entry of the folder shown (or of the folder itself): the name is asked first. */
    async startSave(entry: InsideEntry, inner: string): Promise<void> {
      slot.reset();
      const name = entry.name === '/' ? `partition-${this.browsing ?? 0}` : entry.name;
      this.save = { inner, entry, step: 'choose' };
      this.result = null;
      this.error = null;
      this.targetPath = besideImage(this.path, name);
      await this.checkTarget();
    },
    async checkTarget(): Promise<void> {
      this.target = null;
      const path = this.targetPath.trim();
      if (!path) return;
      const gen = this.generation;
      const target = await api.targetInfo(path).catch(() => null);
      if (gen === this.generation) this.target = target;
    },
    async runSave(): Promise<void> {
      const save = this.save;
      if (!save || this.browsing === null) return;
      const gen = slot.next();
      save.step = 'copying';
      const outcome = await slot.run(this, gen, { kind: 'inside-copy', path: this.path, partition: this.browsing, inner: save.inner, target: this.target?.path ?? this.targetPath.trim() });
      if (!outcome || this.save !== save) return;
      if ('value' in outcome) {
        this.result = outcome.value;
        save.step = 'done';
      } else if (this.cancelled) {
        // A cancelled copy left nothing behind: back to choosing, as it was.
        this.error = null;
        save.step = 'choose';
        await this.checkTarget();
      } else save.step = 'failed';
    },
    cancelSave(): void {
      slot.cancel();
    },
    closeSave(): void {
      slot.reset();
      this.save = null;
      this.result = null;
      this.running = false;
      this.progress = null;
      this.error = null;
      this.cancelled = false;
    },
  },
});
