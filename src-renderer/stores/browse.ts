/** The browser host's folder list (its stand-in for a native open dialog): the folder shown, remembered between visits, and whether every file is listed or only images. */
import { defineStore } from 'pinia';
import type { DirListing } from '../../src-shared/api';
import { api, toApiError, type ApiError } from '../api';

const LAST_FOLDER_KEY = 'diskwright.lastFolder';
const SHOW_ALL_KEY = 'diskwright.showEveryFile';

function rememberedFolder(): string | undefined {
  try {
    return window.localStorage.getItem(LAST_FOLDER_KEY) ?? undefined;
  } catch {
    return undefined;
  }
}

function readFlag(key: string): boolean {
  try {
    return window.localStorage.getItem(key) === '1';
  } catch {
    return false;
  }
}

/** The folder listing the browser host offers in place of a native open dialog. */
export const useBrowseStore = defineStore('browse', {
  state: () => ({
    listing: null as DirListing | null,
    loading: false,
    error: null as ApiError | null,
    generation: 0,
    /** List every file, not only the images (folders are always listed). */
    showAll: readFlag(SHOW_ALL_KEY),
    /** The folder the list came up from (its Parent folder entry), so that folder can take the focus. */
    cameFrom: '' as string,
  }),
  actions: {
    setShowAll(on: boolean): void {
      this.showAll = on;
      try {
        window.localStorage.setItem(SHOW_ALL_KEY, on ? '1' : '0');
      } catch {
        // storage may be disabled; the choice holds for this page
      }
    },

    async load(path?: string): Promise<void> {
      this.cameFrom = this.listing?.path ?? '';
      const gen = ++this.generation;
      this.loading = true;
      this.error = null;
      try {
        const listing = await api.listDir(path);
        if (gen !== this.generation) return;
        this.listing = listing;
        try {
          window.localStorage.setItem(LAST_FOLDER_KEY, listing.path);
        } catch {
          // storage may be disabled; remembering the folder is a convenience
        }
      } catch (err) {
        if (gen !== this.generation) return;
        this.error = toApiError(err);
      } finally {
        if (gen === this.generation) this.loading = false;
      }
    },

    /** The folder shown last time, or the home folder; a remembered folder that is gone falls back to home. */
    async loadInitial(): Promise<void> {
      if (this.listing) return;
      const last = rememberedFolder();
      await this.load(last);
      if (this.error && last !== undefined) await this.load();
    },
  },
});
