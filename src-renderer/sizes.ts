/** Sizes typed by a person, read as qemu-img reads them: 4096, 64k, 10G, 1.5T (binary units). */
const UNITS: Record<string, number> = { '': 1, b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50 };

/** The size in bytes, or a sentence saying what is wrong with the text. */
export function parseSizeText(text: string): number | string {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([bkmgtp]?)(?:i?b)?\s*$/i.exec(text);
  if (!m) return 'Use a number with an optional unit: 512M, 10G, 1.5T.';
  const v = Number(m[1]) * UNITS[m[2].toLowerCase()];
  if (!Number.isFinite(v) || v > Number.MAX_SAFE_INTEGER) return 'That is larger than any disk can be.';
  if (!Number.isInteger(v)) return 'That is not a whole number of bytes.';
  return v;
}
