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
