/** `diskwright checksum`: the guest-content fingerprint (services/checksum.ts), printed as sha256sum prints a hash. */
import { has, parseArgs } from './args';
import { BACKING, formatArg, need, outputArg, progressPrinter, type Io } from './common';
import { toJson } from './output';

export async function cmdChecksum(argv: string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { withValue: ['-f', '--output'], boolean: ['-p', '-U', '--accept-changed-backing'] }, 'checksum');
  need(p, 1, 'checksum', 'an image file name');
  const output = outputArg(p);
  const { checksumImage } = await import('../services/checksum');
  const path = p.positional[0];
  const r = await checksumImage({ path, format: formatArg(p), backingPolicy: BACKING, acceptChangedBacking: has(p, '--accept-changed-backing'), signal: io.signal, onProgress: progressPrinter(io, has(p, '-p')) });
  io.out(output === 'json' ? toJson({ checksum: r.checksum, algorithm: r.algorithm, 'virtual-size': r.size, filename: path }) : `${r.checksum}  ${path}`);
  return 0;
}
