/**
 * `diskwright sparsify` (virt-sparsify's names, qemu-img convert's flags): a compacted copy of an image, or the
 * image compacted in place, or with --dry-run what either would give back; per partition, in plain words.
 */
import { DiskError } from '../block/errors';
import { formatSize } from '../block/sizes';
import type { SparsifyReport } from '../services/sparsify';
import { has, last, parseArgs } from './args';
import { BACKING, formatArg, optionsArg, outputArg, progressPrinter, type Io } from './common';
import { toJson } from './output';

export async function cmdSparsify(argv: string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { withValue: ['-f', '-O', '-o', '-t', '--output'], boolean: ['-c', '-p', '-q', '--in-place', '--dry-run'] }, 'sparsify');
  const inPlace = has(p, '--in-place');
  const dryRun = has(p, '--dry-run');
  const want = inPlace || dryRun ? 1 : 2;
  if (p.positional.length !== want && !(dryRun && !inPlace && p.positional.length === 2)) {
    throw new DiskError('EINVAL', inPlace ? 'sparsify --in-place: expecting one image' : dryRun ? 'sparsify --dry-run: expecting an image' : 'sparsify: expecting a source and a target file name (or --in-place IMAGE)');
  }
  if (inPlace && (has(p, '-O') || has(p, '-o') || has(p, '-c'))) throw new DiskError('EINVAL', 'sparsify --in-place: -O, -o and -c are for a new image');
  const output = outputArg(p);
  const targetFormat = formatArg(p, '-O');
  const { sparsify } = await import('../services/sparsify');
  const progress = has(p, '-p') && !dryRun;
  const r = await sparsify({
    source: p.positional[0],
    sourceFormat: formatArg(p),
    target: dryRun || inPlace ? undefined : p.positional[1],
    targetFormat,
    options: optionsArg(p),
    compress: has(p, '-c'),
    cache: last(p, '-t'),
    inPlace,
    dryRun,
    backingPolicy: BACKING,
    signal: io.signal,
    onProgress: progressPrinter(io, progress),
    onNotice: (text) => io.err(`diskwright: ${text}`),
  });
  if (progress) io.err(`    (100.00/100%)\n`);
  if (output === 'json') io.out(toJson(r));
  else if (!has(p, '-q') || dryRun) io.out(sparsifyText(r));
  return 0;
}

const size = (n: number) => formatSize(n);

/** The report in sentences: one line per partition, then the totals. */
export function sparsifyText(r: SparsifyReport): string {
  const would = r.mode === 'dry-run';
  const given = would ? 'would be given back' : 'given back';
  const lines: string[] = [];
  for (const p of r.partitions) {
    const name = p.number === 0 ? `Whole disk (${p.type || 'no file system'})` : `Partition ${p.number} (${p.type || 'no file system'})`;
    if (p.status === 'kept') lines.push(`${name}: kept as it is: ${p.reason ?? 'its free space is not known'}`);
    else lines.push(`${name}: ${size(p.freeBytes)} free in the file system, ${size(p.reclaimBytes)} of it ${given}`);
  }
  if (r.table !== null && r.partitions.length) lines.push(`Outside the partitions: ${size(r.unpartitioned.freeBytes)} unused, ${size(r.unpartitioned.reclaimBytes)} of it ${given}`);
  if (!r.partitions.length) lines.push('No partition table and no known file system: the image is copied as it is');
  lines.push(`${would ? 'Would give back' : 'Given back'}: ${size(r.reclaimBytes)} (before rounding to the format's allocation unit)`);
  if (r.sizeAfter !== undefined) lines.push(`${r.mode === 'new' ? `${r.source} takes ${size(r.sizeBefore)}; ${r.target} takes ${size(r.sizeAfter)}` : `${r.source}: ${size(r.sizeBefore)} before, ${size(r.sizeAfter)} after`} on the host`);
  for (const n of r.notes) lines.push(n);
  return lines.join('\n');
}
