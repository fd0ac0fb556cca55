/**
 * The image being inspected: its facts (inspect), then its allocation map, which can take longer; a backing file
 * outside the image's folder waits for the user's answer before the chain is followed.
 */
import { defineStore } from 'pinia';
import type { FormatName, ImageInfo, MapPicture } from '../../src-shared/api';
import { api, toApiError, type ApiError } from '../api';
import { useFormatsStore } from './formats';
import { useKeysStore } from './keys';

/** How many cells the allocation map is drawn with (64 columns × 16 rows). */
export const MAP_BUCKETS = 1024;

/** 'unrecognised': no format recognised the file; it is opened only when the user says it is a raw disk. */
type Status = 'idle' | 'loading' | 'ready' | 'failed' | 'unrecognised';

/** A backing file outside its image's folder that the chain stopped at, waiting for the user's answer. */
export interface RefusedBacking {
  /** The image that names the backing file (the top image or one of its backing files). */
  image: string;
  /** The backing file, as an absolute path. */
  backing: string;
  /** 'extent': a file holding the image's own data (a VMDK extent), not a backing file. */
  kind: 'backing' | 'extent';
}

/** The image being inspected: its facts, then its allocation map (which can take longer). */
export const useImageStore = defineStore('image', {
  state: () => ({
    path: '' as string,
    /** The image opened with "Open read-only anyway" while another program writes it ('' for none). */
    readingWhileInUse: '' as string,
    /** The format the user chose for the file (Open as raw); undefined when it was recognised. */
    format: undefined as FormatName | undefined,
    info: null as ImageInfo | null,
    status: 'idle' as Status,
    error: null as ApiError | null,
    picture: null as MapPicture | null,
    mapStatus: 'idle' as Status | 'unavailable',
    mapError: null as ApiError | null,
    /** "Not now" was the answer to following the refused backing file; the map stays cut there. */
    backingDeclined: false,
    grantStatus: 'idle' as 'idle' | 'granting' | 'failed',
    grantError: null as ApiError | null,
    /** Bumped on every open so that answers for an image no longer shown are dropped. */
    generation: 0,
  }),
  getters: {
    /** Set when the chain stopped at a backing file outside its image's folder that was not allowed. */
    refusedBacking(state): RefusedBacking | null {
      const err = state.info?.['backing-error'];
      if (!state.info) return null;
      // A data file of the image itself (a VMDK extent) outside its folder: inspect reads only the descriptor,
      // so the refusal comes from reading the data, the map.
      const mapErr = state.mapError;
      if ((err?.code !== 'EOUTSIDE' || err.path === undefined) && mapErr?.code === 'EOUTSIDE' && mapErr.path !== undefined) {
        return { image: state.info.filename, backing: mapErr.path, kind: 'extent' };
      }
      if (err?.code !== 'EOUTSIDE' || err.path === undefined) return null;
      // The chain as far as it could be followed; its last level is the image that names the refused file.
      let last: ImageInfo = state.info;
      for (let n = 0; last['backing-image'] && n < 300; n++) last = last['backing-image'];
      return { image: last.filename, backing: err.path, kind: 'backing' };
    },
  },
  actions: {
    /**
     * Reads the image's facts; resolves with the error (also kept in state) or null. Without `format` a file
     * no format recognises is not opened: status says 'unrecognised' and the user is asked.
     */
    /**
     * "Open read-only anyway" for an image another program is writing: its reads stop asking for a consistent
     * state (as qemu-img -U), and the page says that what it shows may change.
     */
    async openWhileInUse(path: string): Promise<ApiError | null> {
      try {
        await api.readWhileInUse(path);
      } catch (err) {
        this.status = 'failed';
        this.error = toApiError(err);
        return this.error;
      }
      const err = await this.open(path);
      if (!err) this.readingWhileInUse = path;
      return err;
    },
    async open(path: string, format?: FormatName): Promise<ApiError | null> {
      if (path !== this.readingWhileInUse) this.readingWhileInUse = '';
      const gen = ++this.generation;
      // A new session: the keys of the image shown before are wiped (a new image's own key is kept).
      void useKeysStore().forgetAllBut(path);
      this.path = path;
      this.format = format;
      this.status = 'loading';
      this.error = null;
      this.info = null;
      this.picture = null;
      this.mapStatus = 'idle';
      this.mapError = null;
      this.backingDeclined = false;
      this.grantStatus = 'idle';
      this.grantError = null;
      try {
        // The formats' labels arrive with the first image, so the page never shows a bare format name.
        const [info] = await Promise.all([format === undefined ? api.inspect(path) : api.inspect(path, format), useFormatsStore().load()]);
        if (gen !== this.generation) return null;
        if (info['format-guessed']) {
          this.status = 'unrecognised';
          return null;
        }
        this.info = info;
        this.status = 'ready';
      } catch (err) {
        if (gen !== this.generation) return null;
        this.status = 'failed';
        this.error = toApiError(err);
        return this.error;
      }
      void this.loadMap(gen);
      // An encrypted image (or backing file) asks for its passphrase; the map and facts need none.
      const keys = useKeysStore();
      if (this.info && keys.lockedIn(this.info).length > 0) void keys.unlockChain(this.info, 'open');
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

    /** The user's "Follow this backing file": allows it for this launch, then reads the image and its map again. */
    async followBacking(): Promise<void> {
      const refused = this.refusedBacking;
      if (!refused || this.grantStatus === 'granting') return;
      const gen = this.generation;
      this.grantStatus = 'granting';
      this.grantError = null;
      try {
        await api.allowBackingPath(refused.image, refused.backing);
        if (gen !== this.generation) return;
        if (await this.reread(gen)) this.grantStatus = 'idle';
      } catch (err) {
        if (gen !== this.generation) return;
        this.grantStatus = 'failed';
        this.grantError = toApiError(err);
      }
    },

    /**
     * Reads the open image's facts and map again after something changed it (a merge, a snapshot), keeping the
     * facts on screen until the new ones arrive so the view does not blink away (or, with the URL following the
     * view, navigate away).
     */
    async refresh(): Promise<void> {
      if (!this.info) return;
      const gen = this.generation;
      try {
        await this.reread(gen);
      } catch (err) {
        if (gen !== this.generation) return;
        this.error = toApiError(err);
      }
    },

    /** Inspects the image again and redraws its map, unless another image was opened meanwhile; true when done. */
    async reread(gen: number): Promise<boolean> {
      // The facts on screen stay until the new ones arrive, so the view does not blink away.
      const info = this.format === undefined ? await api.inspect(this.path) : await api.inspect(this.path, this.format);
      if (gen !== this.generation) return false;
      const next = ++this.generation;
      this.info = info;
      this.picture = null;
      this.mapStatus = 'idle';
      this.mapError = null;
      void this.loadMap(next);
      return true;
    },

    /** The user's "Not now": the question goes away; the chain and the map stay cut at that file. */
    declineBacking(): void {
      this.backingDeclined = true;
    },

    close(): void {
      this.generation++;
      void useKeysStore().forgetAllBut();
      this.$reset();
    },
  },
});
