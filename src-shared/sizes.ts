/**
 * Sizes typed by a person, read as qemu-img reads them: 4096, 64k, 512M, 10G, 1.5T, 2E (binary units; a bare
 * number is bytes; "MB", "MiB" and "M" all mean 2^20). One reader for the CLI and the app's forms: each face
 * words its own message from the problem named here.
 */
const UNITS: Record<string, number> = { '': 1, b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50, e: 2 ** 60 };

/** Why a text is not a size: not a number with a unit, beyond 2^53 bytes, or a fraction of a byte. */
export type SizeProblem = 'unreadable' | 'too-large' | 'not-whole';

/** The size in bytes, or what is wrong with the text. */
export function readSize(text: string): number | SizeProblem {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([bkmgtpe]?)(?:i?b)?\s*$/i.exec(text);
  if (!m) return 'unreadable';
  const value = Number(m[1]) * UNITS[m[2].toLowerCase()];
  if (!Number.isFinite(value) || value > Number.MAX_SAFE_INTEGER) return 'too-large';
  if (!Number.isInteger(value)) return 'not-whole';
  return value;
}
