/**
 * `diskwright commit` and `diskwright rebase`, with qemu-img's flags, messages and exit codes:
 *   commit [-f FMT] [-b BASE] [-d] [-p] [-q] [--accept-changed-backing] [--backing-file PATH] IMAGE
 *   rebase [-f FMT] [-F FMT] -b NEW [-u] [-p] [-q] IMAGE
 * qemu-img prints "Image committed." after a commit and nothing after a rebase. A cancelled commit says that
 * the base may hold part of the data (the "nothing was left half-written" of other commands would be untrue).
 */
import { DiskError, toDiskError } from '../block/errors';
import { commitImage } from '../services/commit';
import { rebaseImage } from '../services/rebase';
import { has, last, parseArgs } from './args';
import { BACKING, formatArg, need, progressPrinter, type Io } from './common';

export async function cmdCommit(argv: string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { withValue: ['-f', '-b', '-t', '-r', '--backing-file'], boolean: ['-d', '-p', '-q', '--accept-changed-backing'] }, 'commit');
  need(p, 1, 'commit', 'an image file name');
  const image = p.positional[0];
  const quiet = has(p, '-q');
  const progress = has(p, '-p') && !quiet;
  try {
    await commitImage({
      path: image,
      format: formatArg(p),
      base: last(p, '-b'),
      keepOverlay: has(p, '-d'),
      backingPolicy: BACKING,
      acceptChangedBacking: has(p, '--accept-changed-backing'),
      backingOverride: last(p, '--backing-file'),
      signal: io.signal,
      onProgress: progressPrinter(io, progress),
    });
  } catch (err) {
    const e = toDiskError(err, image);
    if (e.code !== 'ECANCELLED') throw e;
    io.err(`diskwright: commit cancelled; ${image} is unchanged, but its base may hold part of its data`);
    return 130;
  }
  if (progress) io.err('    (100.00/100%)\n');
  if (!quiet) io.out('Image committed.');
  return 0;
}

export async function cmdRebase(argv: string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { withValue: ['-f', '-F', '-b', '-t', '-T'], boolean: ['-u', '-p', '-q', '-U', '-c', '--accept-changed-backing'] }, 'rebase');
  need(p, 1, 'rebase', 'an image file name');
  const newBacking = last(p, '-b');
  if (newBacking === undefined) throw new DiskError('EINVAL', 'Must specify backing file (-b) or use unsafe mode (-u)');
  const progress = has(p, '-p') && !has(p, '-q');
  await rebaseImage({
    path: p.positional[0],
    format: formatArg(p),
    newBacking,
    newBackingFormat: formatArg(p, '-F'),
    unsafe: has(p, '-u'),
    backingPolicy: BACKING,
    acceptChangedBacking: has(p, '--accept-changed-backing'),
    signal: io.signal,
    onProgress: progressPrinter(io, progress),
  });
  if (progress) io.err('    (100.00/100%)\n');
  return 0;
}
