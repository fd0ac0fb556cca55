/**
 * The passphrases of encrypted images, as the renderer sees them: never the passphrases themselves (they go to
 * the main process, which holds them, and the dialog's field is cleared), only which images were unlocked in
 * this session, and the one question being asked (the passphrase dialog shows it).
 *
 * A session with an image: Inspect opens it (keys of the image shown before are forgotten), asks for the key of
 * every encrypted image of its chain, and the Convert wizard asks for whatever is still locked in its source;
 * closing the image forgets them. A new encrypted image's key (New Image, Convert) is set under the target's
 * name for the job, and kept only when the new image is opened next.
 */
import { defineStore } from 'pinia';
import type { ImageInfo } from '../../src-shared/api';
import { api, toApiError } from '../api';
import type { EncryptionDraft } from '../encryptionDraft';

/** Why the dialog asks: shown as its heading and first line. */
export type AskReason = 'open' | 'backing' | 'convert';

export interface KeyQuestion {
  /** The encrypted image whose key is asked for. */
  path: string;
  reason: AskReason;
  /** 'luks' or 'aes' (the legacy AES cannot tell a wrong passphrase). */
  encryption: string;
  /** The last answer's refusal, in a plain line ("The passphrase does not open any key slot."). */
  error: string;
  busy: boolean;
}

/** The chain's images, top first (at most 300 levels, as the rest of the app walks it). */
export function chainOf(info: ImageInfo): ImageInfo[] {
  const out: ImageInfo[] = [];
  for (let cur: ImageInfo | undefined = info; cur && out.length < 300; cur = cur['backing-image']) out.push(cur);
  return out;
}

/** How an image is encrypted, from info's format-specific `encrypt` ('luks', 'aes'); '' when it is not. */
export function encryptionOf(info: ImageInfo): string {
  if (!info.encrypted) return '';
  const enc = info['format-specific']?.data.encrypt as { format?: unknown } | undefined;
  return typeof enc?.format === 'string' ? enc.format : 'luks';
}

/** The engine's refusal of a wrong passphrase, as the dialog says it: one plain sentence. */
function plainLine(message: string): string {
  const m = /the passphrase does not open any key slot/i.exec(message);
  if (m) return 'The passphrase does not open any key slot.';
  const text = message.replace(/^.*?: (?=[a-z])/, '');
  return text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? '' : '.');
}

let answer: ((unlocked: boolean) => void) | null = null;

export const useKeysStore = defineStore('keys', {
  state: () => ({
    /** Images whose key the main process holds for this session (their paths as info names them). */
    unlocked: [] as string[],
    /** Images whose key was asked for and declined (Cancel): not asked again until reopened. */
    declined: [] as string[],
    question: null as KeyQuestion | null,
  }),
  getters: {
    /** The encrypted images of a chain whose key is not held. */
    lockedIn(state) {
      return (info: ImageInfo | null | undefined): ImageInfo[] => (info ? chainOf(info).filter((i) => i.encrypted && !state.unlocked.includes(i.filename)) : []);
    },
  },
  actions: {
    /**
     * Asks for the key of one encrypted image in the dialog; true once it is unlocked, false when the user
     * cancels. A question already open is answered "no" first (one dialog at a time).
     */
    ask(image: ImageInfo, reason: AskReason): Promise<boolean> {
      answer?.(false);
      this.question = { path: image.filename, reason, encryption: encryptionOf(image), error: '', busy: false };
      return new Promise((resolve) => (answer = resolve));
    },
    /** The dialog's Unlock: the main process checks the passphrase by opening the image, and holds it. */
    async submit(passphrase: string): Promise<void> {
      const q = this.question;
      if (!q || q.busy) return;
      q.busy = true;
      q.error = '';
      try {
        await api.unlockImage(q.path, passphrase);
        if (this.question !== q) return;
        if (!this.unlocked.includes(q.path)) this.unlocked.push(q.path);
        this.declined = this.declined.filter((p) => p !== q.path);
        this.finish(true);
      } catch (err) {
        if (this.question !== q) return;
        q.error = plainLine(toApiError(err).message);
        q.busy = false;
      }
    },
    /** The dialog's Cancel (or Escape): the image stays open without its data. */
    cancel(): void {
      const q = this.question;
      if (q && !this.declined.includes(q.path)) this.declined.push(q.path);
      this.finish(false);
    },
    finish(unlocked: boolean): void {
      this.question = null;
      const a = answer;
      answer = null;
      a?.(unlocked);
    },
    /**
     * Asks, one after another, for every locked image of the chain (not those declined, unless `again`); true
     * when none is left locked.
     */
    async unlockChain(info: ImageInfo, reason: 'open' | 'convert', again = false): Promise<boolean> {
      for (const img of this.lockedIn(info)) {
        if (!again && this.declined.includes(img.filename)) continue;
        const ok = await this.ask(img, img === info ? reason : reason === 'open' ? 'backing' : 'convert');
        if (!ok) return false;
      }
      return this.lockedIn(info).length === 0;
    },
    /** Holds the key a new encrypted image at `path` is made with (the job takes it from the main process). */
    async setTargetKey(path: string, passphrase: string): Promise<void> {
      await api.setTargetKey(path, passphrase);
    },
    /** The new image made with a key set by setTargetKey is kept unlocked (it is about to be opened). */
    keep(path: string): void {
      if (!this.unlocked.includes(path)) this.unlocked.push(path);
    },
    /** Wipes the key held for one image (or a target). */
    async forget(path: string): Promise<void> {
      this.unlocked = this.unlocked.filter((p) => p !== path);
      await api.forgetImageKey(path).catch(() => undefined);
    },
    /** Ends the session's keys: every key held is wiped in the main process, but those of `keep`. */
    async forgetAllBut(keep?: string): Promise<void> {
      const drop = this.unlocked.filter((p) => p !== keep);
      this.unlocked = this.unlocked.filter((p) => p === keep);
      this.declined = [];
      if (this.question && this.question.path !== keep) this.finish(false);
      await Promise.all(drop.map((p) => api.forgetImageKey(p).catch(() => undefined)));
    },
  },
});

/**
 * Hands the passphrase to the main process for `target` (on the way to the review) and empties the fields. A
 * key set earlier for another target name is forgotten. Nothing is done when encryption is off (a key set
 * earlier is forgotten then too).
 */
/** The targets whose key was handed over and not yet released (a page that goes wipes them: forgetTargetKeys). */
const targetKeys = new Set<string>();

export async function handOver(d: EncryptionDraft, target: string): Promise<void> {
  if (d.keySetFor && (!d.enabled || d.keySetFor !== target || d.passphrase)) {
    const old = d.keySetFor;
    d.keySetFor = '';
    targetKeys.delete(old);
    await api.forgetImageKey(old).catch(() => undefined);
  }
  if (!d.enabled || !d.passphrase) return;
  const typed = d.passphrase;
  d.passphrase = '';
  d.confirm = '';
  targetKeys.add(target);
  await api.setTargetKey(target, typed);
  d.keySetFor = target;
}

/** The job is over (or the wizard closed): the target's key is wiped unless it is `kept` (the new image is opened next). */
export async function release(d: EncryptionDraft, kept = false): Promise<void> {
  d.passphrase = '';
  d.confirm = '';
  const key = d.keySetFor;
  d.keySetFor = '';
  targetKeys.delete(key);
  if (key && !kept) await api.forgetImageKey(key).catch(() => undefined);
}

/** Wipes the keys of every target handed over and not released (the page goes away mid-wizard). */
export function forgetTargetKeys(): void {
  for (const t of targetKeys) void api.forgetImageKey(t).catch(() => undefined);
  targetKeys.clear();
}
