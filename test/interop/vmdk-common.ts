/** The oracles (test/oracles.ts) bound to VMDK, and the VMDK interop suites' own image maker and write pattern. */
import { assertQemuAccepts as accepts, assertReadsLikeQemu as readsLike, assertSameContent as sameContent, qemuIo } from '../oracles';
import { must } from '../helpers';

export { ourMap, qemuMap } from '../oracles';
export const io = (image: string, commands: string[]): void => void qemuIo(image, 'vmdk', commands);
export const assertSameContent = (image: string, scratchPath: (n: string) => string, label = image): void => sameContent(image, 'vmdk', scratchPath, label);
export const assertReadsLikeQemu = (image: string, scratchPath: (n: string) => string, label = image): void => readsLike(image, 'vmdk', scratchPath, label);
export const assertQemuAccepts = (image: string, raw?: string): void => accepts(image, 'vmdk', raw);

export function qemuCreate(path: string, opts: string, size: string, backing?: string): void {
  must('qemu-img', ['create', '-q', '-f', 'vmdk', ...(opts ? ['-o', opts] : []), ...(backing ? ['-b', backing, '-F', 'vmdk'] : []), path, size]);
}

/** Data, zero writes, unaligned writes over a few MiB. */
export const MIXED = [
  'write -P 0x11 0 4k',
  'write -P 0x22 100k 70k',
  'write -z 300k 128k',
  'write -P 0x33 1M 64k',
  'write -P 0x44 2M 128k',
  'write -z 2M 64k',
  'write -P 0x55 3001000 5000',
  'write -P 0x66 4095k 1k',
];

export { assertPlainError } from '../helpers';
