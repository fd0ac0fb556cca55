/** Sizes typed into the app's forms, read by the same reader as the CLI's (src-shared/sizes.ts), in the app's words. */
import { readSize } from '../src-shared/sizes';

const PROBLEMS = {
  unreadable: 'Use a number with an optional unit: 512M, 10G, 1.5T.',
  'too-large': 'That is larger than any disk can be.',
  'not-whole': 'That is not a whole number of bytes.',
} as const;

/** The size in bytes, or a sentence saying what is wrong with the text. */
export function parseSizeText(text: string): number | string {
  const size = readSize(text);
  return typeof size === 'number' ? size : PROBLEMS[size];
}

/** A byte count as the size field shows it: the largest unit that says it exactly (1073741824 → "1G"), else bytes. */
export function sizeText(bytes: number): string {
  for (const [unit, n] of [['E', 2 ** 60], ['P', 2 ** 50], ['T', 2 ** 40], ['G', 2 ** 30], ['M', 2 ** 20], ['k', 2 ** 10]] as const) {
    if (bytes >= n && bytes % n === 0) return `${bytes / n}${unit}`;
  }
  return String(bytes);
}
