import { defineStore } from 'pinia';
import type { ImageInfo, MapPicture } from '../../src-shared/api';
import { api, toApiError, type ApiError } from '../api';

/** How many cells the allocation map is drawn with (64 columns × 16 rows). */
export const MAP_BUCKETS = 1024;

type Status = 'idle' | 'loading' | 'ready' | 'failed';

/** The image being inspected: its facts, then its allocation map (which can take longer). */
export const useImageStore = defineStore('image', {
  state: () => ({
    path: '' as string,
    info: null as ImageInfo | null,
    status: 'idle' as Status,
    error: null as ApiError | null,
    picture: null as MapPicture | null,
    mapStatus: 'idle' as Status | 'unavailable',
    mapError: null as ApiError | null,
    /** Bumped on every open so that answers for an image no longer shown are dropped. */
    generation: 0,
  }),
  actions: {
    /** Reads the image's facts; resolves with the error (also kept in state) or null. */
    async open(path: string): Promise<ApiError | null> {
      const gen = ++this.generation;
      this.path = path;
      this.status = 'loading';
      this.error = null;
      this.info = null;
      this.picture = null;
      this.mapStatus = 'idle';
      this.mapError = null;
      try {
        const info = await api.inspect(path);
        if (gen !== this.generation) return null;
        this.info = info;
        this.status = 'ready';
      } catch (err) {
        if (gen !== this.generation) return null;
        this.status = 'failed';
        this.error = toApiError(err);
        return this.error;
      }
      void this.loadMap(gen);
      return null;
    },

    async loadMap(gen: number): Promise<void> {
      if (!this.info) return;
      if (!this.info['data-readable']) {
        this.mapStatus = 'unavailable';
        return;
      }
      this.mapStatus = 'loading';
      try {
        const picture = await api.mapPicture(this.path, MAP_BUCKETS);
        if (gen !== this.generation) return;
        this.picture = picture;
        this.mapStatus = 'ready';
      } catch (err) {
        if (gen !== this.generation) return;
        this.mapStatus = 'failed';
        this.mapError = toApiError(err);
      }
    },

    close(): void {
      this.generation++;
      this.$reset();
    },
  },
});
