/** The oracles (test/oracles.ts) bound to qcow2, for the qcow2 interop suites. */
import { assertQemuAccepts as accepts, assertReadsLikeQemu as readsLike, assertSameContent as sameContent, qemuIo } from '../oracles';

/** qemu-io commands over a qcow2 image. */
export const io = (image: string, commands: string[]): void => void qemuIo(image, 'qcow2', commands);
export const assertSameContent = (image: string, scratchPath: (n: string) => string, label = image): void => sameContent(image, 'qcow2', scratchPath, label);
export const assertReadsLikeQemu = (image: string, scratchPath: (n: string) => string, label = image): void => readsLike(image, 'qcow2', scratchPath, label);
export const assertQemuAccepts = (image: string, expectedRaw?: string): void => accepts(image, 'qcow2', expectedRaw);

export { assertPlainError } from '../helpers';
