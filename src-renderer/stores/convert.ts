/**
 * The Convert wizard: target format, its options and place → review with an estimate → convert (progress,
 * rate, time left, cancel that leaves nothing) → optional verify (compare, with its own progress) → result.
 */
import { defineStore } from 'pinia';
import type { CompareOutcome, ConvertResult, FormatName, HostTargetChoice, HostTargetName, HostTargetPlan, ImageInfo, OptionSpec, SnapshotInfo, TargetInfo } from '../../src-shared/api';
import { api, ApiError, toApiError } from '../api';
import { JobSlot, jobState, type JobOutcome } from '../api/jobs';
import { newDraft, withEncryption } from '../encryptionDraft';
import { release, useKeysStore } from './keys';

export type ConvertStep = 'target' | 'review' | 'converting' | 'verifying' | 'result' | 'failed';

const slot = new JobSlot();
/** The pause after the last key before a typed target path is checked. */
let typingTimer: ReturnType<typeof setTimeout> | undefined;

export const useConvertStore = defineStore('convert', {
  state: () => ({
    active: false,
    step: 'target' as ConvertStep,
    source: null as ImageInfo | null,
    /** Bytes of data the source holds (from its map), for the estimate; undefined when not known. */
    sourceData: undefined as number | undefined,
    format: '' as FormatName | '',
    specs: [] as OptionSpec[],
    values: {} as Record<string, string | number | boolean>,
    compress: false,
    verify: true,
    targetPath: '',
    /** What the folder says of `targetFor` (exists, folder exists, free space); shown only while it is the path typed. */
    target: null as TargetInfo | null,
    targetFor: '',
    /** The latest target check: an older answer arriving late is dropped. */
    targetSeq: 0,
    /** The running convert or verify; `error` also holds a failure to read the source. */
    ...jobState(),
    result: null as ConvertResult | null,
    verdict: null as CompareOutcome | null,
    /** The internal snapshot being exported instead of the image's current state (the snapshot browser's Export). */
    snapshot: null as SnapshotInfo | null,
    /**
     * The exported snapshot's own data in the image file (its clusters, not a backing file's): the "Before" of
     * the result, since the file's size counts every snapshot it holds. undefined until its map is read.
     */
    snapshotBytes: undefined as number | undefined,
    /** qcow2 → qcow2: the new image keeps the source's snapshots. */
    keepSnapshots: false,
    /** A hypervisor or cloud the copy is for (Azure, ESXi…): it decides the format, options and size. */
    hostTarget: null as HostTargetName | null,
    hostChoice: {} as HostTargetChoice,
    /** What the copy for hostTarget will be (its size, and what is worth saying, such as Azure's rounding). */
    hostPlan: null as HostTargetPlan | null,
    /** Why the source cannot be made for that target (too large for Azure…), in the engine's words. */
    hostPlanError: '',
    /** "Encrypt with a passphrase" (qcow2 targets): the choice, and the passphrase until Review hands it over. */
    encryption: newDraft(),
  }),
  actions: {
    /** Opens the wizard for an image (read again so the facts are current). */
    /** `snapshot`: export that snapshot (or the one with that id) instead of the current state. */
    async start(path: string, sourceData?: number, snapshot?: SnapshotInfo | string): Promise<void> {
      this.$reset();
      this.active = true;
      try {
        this.source = await api.inspect(path);
        this.sourceData = sourceData;
        const chosen = typeof snapshot === 'string' ? this.source.snapshots?.find((s) => s.id === snapshot) : snapshot;
        if (typeof snapshot === 'string' && !chosen) throw new Error(`${path} has no snapshot with id ${snapshot}`);
        if (chosen) {
          this.snapshot = chosen;
          // What the snapshot holds (its map, from the tables alone): the estimate and the result's "Before".
          void this.measureSnapshot(path, chosen.id);
        }
        // A copy reads the data: every encrypted image of the source's chain must be unlocked first.
        const source = this.source;
        if (!(await useKeysStore().unlockChain(source, 'convert', true))) {
          if (this.source !== source) return;
          throw new ApiError({ code: 'EACCES', message: `${source.filename} is encrypted: its passphrase is needed to copy its data` });
        }
      } catch (err) {
        this.error = toApiError(err);
        this.step = 'failed';
      }
    },
    /** The data the exported snapshot reads (for the estimate) and holds in this file itself (for "Before"). */
    async measureSnapshot(path: string, id: string): Promise<void> {
      try {
        const picture = await api.snapshotMap(path, id, 64);
        if (this.snapshot?.id !== id || this.source?.filename === undefined) return;
        let data = 0;
        let backing = 0;
        for (const b of picture.buckets) {
          data += b.data;
          backing += b.backing ?? 0;
        }
        this.sourceData = data;
        this.snapshotBytes = data - backing;
      } catch {
        // Without it the estimate falls back to the file's size and "Before" says the file's size is all snapshots'.
      }
    },
    /** A copy for a hypervisor or cloud: its format with the options it takes, planned for this source. */
    async chooseHostTarget(name: HostTargetName | null, format: FormatName | '', extension: string): Promise<void> {
      this.hostTarget = name;
      this.hostChoice = {};
      this.hostPlan = null;
      this.hostPlanError = '';
      if (!name || !format) {
        this.format = '';
        return;
      }
      await this.chooseFormat(format, extension, true);
      await this.planHostTarget();
    },
    async planHostTarget(): Promise<void> {
      const name = this.hostTarget;
      if (!name || !this.source) return;
      this.hostPlan = null;
      this.hostPlanError = '';
      try {
        this.hostPlan = await api.hostTargetPlan(this.source.filename, name, { ...this.hostChoice });
      } catch (err) {
        this.hostPlanError = toApiError(err).message;
      }
    },
    async chooseFormat(format: FormatName, extension: string, forHostTarget = false): Promise<void> {
      if (!forHostTarget) {
        this.hostTarget = null;
        this.hostPlan = null;
        this.hostPlanError = '';
      }
      this.format = format;
      this.values = {};
      this.compress = false;
      // The default name is set before anything is awaited: a name typed meanwhile must not be overwritten.
      let src = this.source?.filename ?? '';
      // An exported snapshot is named after it: disk-before-upgrade.vmdk.
      if (this.snapshot) src = src.replace(/(\.[A-Za-z0-9]+)?$/, `-${this.snapshot.name.replace(/[^A-Za-z0-9._-]+/g, '-')}$1`);
      // Beside the source, same name, the new format's extension.
      this.targetPath = src.replace(/(\.[A-Za-z0-9]+)?$/, `.${extension}`);
      if (this.targetPath === this.source?.filename) this.targetPath = src.replace(/(\.[A-Za-z0-9]+)?$/, `-converted.${extension}`);
      this.specs = await api.createOptions(format);
      await this.checkTarget();
    },
    async checkTarget(): Promise<void> {
      const path = this.targetPath.trim();
      const seq = ++this.targetSeq;
      if (!path) {
        this.target = null;
        this.targetFor = '';
        return;
      }
      const info = await api.targetInfo(path).catch(() => null);
      if (seq !== this.targetSeq) return;
      this.target = info;
      this.targetFor = path;
    },
    /** The typed path is checked as it is typed (a moment after the last key), not only when the field is left. */
    typedTarget(): void {
      clearTimeout(typingTimer);
      typingTimer = setTimeout(() => void this.checkTarget(), 250);
    },
    async run(options: Record<string, string | number | boolean>): Promise<void> {
      if (!this.source) return;
      const gen = slot.next();
      this.step = 'converting';
      const target = this.target?.path ?? this.targetPath.trim();
      const result = this.value(
        await slot.run(this, gen, {
          kind: 'convert',
          source: this.source.filename,
          target,
          targetFormat: this.format as FormatName,
          // For a host target the target sets the options; what it leaves open travels as hostChoice.
          options: this.hostTarget ? {} : this.format === 'qcow2' ? withEncryption(options, this.encryption) : options,
          ...(this.hostTarget ? { hostTarget: this.hostTarget, hostChoice: { ...this.hostChoice } } : {}),
          // qemu writes no compressed cluster into an encrypted image, nor does the engine: the box is hidden then.
          ...(this.compress && !this.hostTarget && !(this.format === 'qcow2' && this.encryption.enabled) ? { compress: true } : {}),
          ...(this.snapshot ? { snapshot: this.snapshot.id } : {}),
          ...(this.keepSnapshots && this.format === 'qcow2' && !this.snapshot && !this.encryption.enabled ? { keepSnapshots: true } : {}),
        }),
      );
      if (!result) return;
      this.result = result;
      if (this.verify) {
        this.step = 'verifying';
        // An exported snapshot is compared with the snapshot, not with the image as it is now.
        const verdict = this.value(await slot.run(this, gen, { kind: 'compare', a: this.source.filename, b: target, formatB: this.format as FormatName, ...(this.snapshot ? { snapshotA: this.snapshot.id } : {}) }));
        if (!verdict) return;
        this.verdict = verdict;
      }
      this.step = 'result';
    },
    /** A job's value; undefined when it failed, was cancelled or the wizard moved on (the step then says which). */
    value<T>(outcome: JobOutcome<T> | undefined): T | undefined {
      if (!outcome) return undefined;
      if ('value' in outcome) return outcome.value;
      if (this.cancelled) {
        this.error = null;
        // A cancelled convert left nothing behind; a cancelled verify leaves the finished target.
        this.step = this.result ? 'result' : 'review';
      } else this.step = 'failed';
      return undefined;
    },
    cancel(): void {
      slot.cancel();
    },
    close(): void {
      slot.reset();
      // The new image's key (set for the convert and its verify) is wiped, unless openTarget kept it.
      void release(this.encryption);
      this.$reset();
    },
  },
});
