/** `diskwright measure`, as qemu-img measure: the room a new image needs, for --size N or for an existing image's data. */
import { DiskError } from '../block/errors';
import { parseSize } from '../block/sizes';
import { driverFor } from '../registry';
import { measureImage } from '../services/measure';
import { describeOptions } from '../services/options';
import { has, last, parseArgs } from './args';
import { BACKING, formatArg, optionsArg, outputArg, type Io } from './common';
import { toJson } from './output';

export async function cmdMeasure(argv: string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { withValue: ['-f', '-O', '-o', '--output', '--size', '-l'], boolean: ['-U', '--force-share'] }, 'measure');
  if (has(p, '-l')) throw new DiskError('EUNSUPPORTED', 'measure: snapshots (-l) are not supported');
  if (p.positional.length > 1) throw new DiskError('EINVAL', 'measure: give at most one image file name');
  if (p.positional.length === 0 && (has(p, '-f') || has(p, '-l'))) throw new DiskError('EINVAL', 'measure: -f and -l require a filename argument');
  // qemu-img's default target format is raw, as in convert.
  const format = last(p, '-O') ?? 'raw';
  const options = optionsArg(p);
  if ('help' in options || options['?'] !== undefined) {
    io.out(describeOptions(format, driverFor(format).createOptions)); // measure takes create's options
    return 0;
  }
  const sourceFormat = formatArg(p);
  const output = outputArg(p);
  const sizeText = last(p, '--size');
  const size = sizeText !== undefined ? parseSize(sizeText, 'image size') : undefined;
  const r = await measureImage({
    format,
    options,
    size,
    source: p.positional[0],
    sourceFormat,
    backingPolicy: BACKING,
    signal: io.signal,
  });
  if (output === 'json') {
    // Keys in qemu-img's order: bitmaps (when shown) first.
    const obj = { ...(r.bitmaps !== undefined ? { bitmaps: r.bitmaps } : {}), required: r.required, 'fully-allocated': r['fully-allocated'] };
    io.out(toJson(obj));
  } else {
    const lines = [`required size: ${r.required}`, `fully allocated size: ${r['fully-allocated']}`];
    if (r.bitmaps !== undefined) lines.push(`bitmaps size: ${r.bitmaps}`);
    io.out(lines.join('\n')); // one write: a reader that stops after the first line gets no half-written output
  }
  return 0;
}
