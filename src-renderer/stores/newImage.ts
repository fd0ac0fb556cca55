/**
 * The New Image wizard: format → size, options, backing file and where → review → create. The form is drawn
 * from the format's OptionSpec (one schema with the CLI's -o); the main side validates again when it creates.
 */
import { defineStore } from 'pinia';
import type { FormatName, ImageInfo, OptionSpec, TargetInfo } from '../../src-shared/api';
import { api, toApiError, type ApiError } from '../api';
import { JobSlot, jobState } from '../api/jobs';
import { newDraft, withEncryption } from '../encryptionDraft';
import { release } from './keys';
import { sizeText } from '../sizes';

const slot = new JobSlot();

export type NewImageStep = 'format' | 'details' | 'review' | 'creating' | 'failed';

export const useNewImageStore = defineStore('newImage', {
  state: () => ({
    active: false,
    step: 'format' as NewImageStep,
    format: '' as FormatName | '',
    specs: [] as OptionSpec[],
    /** Option values as typed (text for sizes), only the ones the user changed from the default. */
    values: {} as Record<string, string | number | boolean>,
    sizeText: '10G',
    backingPath: '',
    backing: null as ImageInfo | null,
    backingError: null as ApiError | null,
    targetPath: '',
    target: null as TargetInfo | null,
    /** The review's second question, for a file there that is no disk image: "yes, replace it". */
    replaceNotImage: false,
    /** "Encrypt with a passphrase" (qcow2): the choice, and the passphrase until Review hands it over. */
    encryption: newDraft(),
    /** The create job (a create reports no progress and has no Cancel). */
    ...jobState(),
  }),
  actions: {
    start(folder?: string): void {
      this.$reset();
      this.active = true;
      if (folder) this.targetPath = folder.replace(/[\\/]+$/, '') + '/';
    },
    async chooseFormat(format: FormatName, extension: string): Promise<void> {
      this.format = format;
      this.values = {};
      this.specs = await api.createOptions(format);
      // The target's name follows the format until the user names it themselves.
      const m = /^(.*[\\/])?(new-disk)?(\.[A-Za-z0-9]+)?$/.exec(this.targetPath);
      if (!this.targetPath || m) this.targetPath = `${m?.[1] ?? ''}new-disk.${extension}`;
      this.step = 'details';
      void this.checkTarget();
    },
    async checkBacking(): Promise<void> {
      this.backing = null;
      this.backingError = null;
      const path = this.backingPath.trim();
      if (!path) return;
      try {
        this.backing = await api.inspect(path);
        // A new overlay is as large as its base unless told otherwise.
        this.sizeText = sizeText(this.backing['virtual-size']);
      } catch (err) {
        this.backingError = toApiError(err);
      }
    },
    async checkTarget(): Promise<void> {
      const path = this.targetPath.trim();
      this.target = null;
      this.replaceNotImage = false;
      if (!path) return;
      try {
        this.target = await api.targetInfo(path);
      } catch {
        this.target = null;
      }
    },
    async create(options: Record<string, string | number | boolean>, size: number): Promise<void> {
      const gen = slot.next();
      this.step = 'creating';
      const outcome = await slot.run(this, gen, {
        kind: 'create',
        path: this.target?.path ?? this.targetPath.trim(),
        format: this.format as FormatName,
        size,
        options: this.format === 'qcow2' ? withEncryption(options, this.encryption) : options,
        ...(this.backing ? { backing: this.backing.filename, backingFormat: this.backing.format } : {}),
        // The review said "The file already there is replaced" and the person pressed Create: that is the
        // confirmation the job needs (it refuses an existing file otherwise, and a file that is no disk image always).
        ...(this.target?.exists ? { replace: true } : {}),
        // …and a file that is no disk image only after the review's second question was answered yes.
        ...(this.target?.exists && this.target.notImage && this.replaceNotImage ? { replaceNotImage: true } : {}),
      });
      if (outcome && 'error' in outcome) this.step = 'failed';
      // The key set for the new image is wiped unless the image was made (it is opened next, unlocked).
      else if (outcome) await release(this.encryption, true);
    },
    close(): void {
      slot.reset();
      void release(this.encryption);
      this.$reset();
    },
  },
});
