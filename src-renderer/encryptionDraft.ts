/**
 * "Encrypt with a passphrase" in the New Image and Convert wizards (qcow2 targets): what the user chose, the
 * passphrase typed twice with a strength hint, LUKS by default and qemu's original AES only when asked for "old
 * readers". The passphrase leaves the renderer once, through setTargetKey, when the user goes on to the review:
 * the fields are emptied then and the job spec never carries it (the create takes it from the main process);
 * stores/keys.ts handOver and release do that. This file is pure (no API), so that it is unit-tested.
 */
export interface EncryptionDraft {
  enabled: boolean;
  format: 'luks' | 'aes';
  passphrase: string;
  confirm: string;
  /** The target whose key was handed to the main process (setTargetKey); '' while none is. */
  keySetFor: string;
}

export function newDraft(): EncryptionDraft {
  return { enabled: false, format: 'luks', passphrase: '', confirm: '', keySetFor: '' };
}

export interface Strength {
  /** 0 weak … 3 strong. */
  level: 0 | 1 | 2 | 3;
  label: string;
  advice: string;
}

/**
 * A rough strength: the bits a guesser who knows the character classes used must try, less for a run of one
 * character or a passphrase made of one repeated piece. A hint for people, not a policy: any passphrase is taken.
 */
export function strength(p: string): Strength {
  const chars = [...p];
  let pool = 0;
  if (/[a-z]/.test(p)) pool += 26;
  if (/[A-Z]/.test(p)) pool += 26;
  if (/[0-9]/.test(p)) pool += 10;
  if (/[^a-zA-Z0-9]/.test(p)) pool += 33;
  if (/[^\x00-\x7f]/.test(p)) pool += 100;
  const distinct = new Set(chars).size;
  // "aaaaaaaa", "abcabcabc": as weak as the piece repeated.
  const repeated = /^(.+?)\1+$/su.exec(p);
  const effective = repeated ? [...repeated[1]].length + 1 : chars.length;
  const bits = distinct <= 1 ? 2 : effective * Math.log2(Math.max(pool, 2));
  if (bits < 40) return { level: 0, label: 'Weak', advice: 'easy to guess: several unrelated words make a passphrase long and easy to remember.' };
  if (bits < 60) return { level: 1, label: 'Fair', advice: 'a longer passphrase (more words) holds up far better against guessing.' };
  if (bits < 80) return { level: 2, label: 'Good', advice: 'hard to guess.' };
  return { level: 3, label: 'Strong', advice: 'very hard to guess.' };
}

/** What keeps the wizard from going on, in a sentence; '' when nothing does. */
export function draftProblem(d: EncryptionDraft, target: string): string {
  if (!d.enabled) return '';
  if (d.keySetFor && d.keySetFor === target && !d.passphrase && !d.confirm) return '';
  if (!d.passphrase) return 'Type the passphrase the new image is to be encrypted with.';
  if (!d.confirm) return 'Type the passphrase again, to be sure of it.';
  if (d.passphrase !== d.confirm) return 'The two passphrases differ.';
  return '';
}

/**
 * The create options with the encryption chosen: encrypt.format added when it is on (with the LUKS settings
 * typed, which the original AES does not take), every encrypt.* setting left out when it is off.
 */
export function withEncryption<V>(options: Record<string, V>, d: EncryptionDraft): Record<string, V | string> {
  const out: Record<string, V | string> = {};
  for (const [k, v] of Object.entries(options)) if (!k.startsWith('encrypt.') || (d.enabled && d.format === 'luks')) out[k] = v;
  if (d.enabled) out['encrypt.format'] = d.format;
  return out;
}

/** "LUKS (aes-256-xts)" or "the original qcow2 AES (weak)", for the review. */
export function draftLabel(d: EncryptionDraft, cipherAlg?: string, cipherMode?: string): string {
  if (d.format === 'aes') return 'the original qcow2 AES (weak: for old readers only)';
  return `LUKS (${cipherAlg ?? 'aes-256'}-${cipherMode ?? 'xts'})`;
}
