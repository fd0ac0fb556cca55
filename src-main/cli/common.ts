/** What every command shares: the I/O it is given and the parsing of the flags most commands take. */
import { DiskError } from '../block/errors';
import { parseSize } from '../block/sizes';
import type { BackingPolicy } from '../block/types';
import { driverFor } from '../registry';
import { splitOptionString } from '../services/options';
import { last, type ParsedArgs } from './args';

/** The CLI follows backing files wherever the image says, as qemu-img does: the user named the image. */
export const BACKING: BackingPolicy = 'anywhere';

export interface Io {
  /** Aborted by Ctrl-C / SIGTERM: long commands cancel like the app's Cancel button. */
  signal?: AbortSignal;
  out: (s: string) => void;
  err: (s: string) => void;
  writeOut: (b: Uint8Array) => Promise<void>;
  readIn: () => Promise<Uint8Array>;
}

export function formatArg(p: ParsedArgs, flag = '-f'): string | undefined {
  const f = last(p, flag);
  if (f !== undefined) driverFor(f); // unknown names fail with the list of known ones
  return f;
}

export function outputArg(p: ParsedArgs): 'human' | 'json' {
  const o = last(p, '--output') ?? 'human';
  if (o !== 'human' && o !== 'json') throw new DiskError('EINVAL', `--output must be human or json, not '${o}'`);
  return o;
}

export function need(p: ParsedArgs, n: number, command: string, what: string): void {
  if (p.positional.length < n) throw new DiskError('EINVAL', `${command}: expecting ${what}`);
  if (p.positional.length > n + 1) throw new DiskError('EINVAL', `${command}: too many arguments`);
}

export function optionsArg(p: ParsedArgs): Record<string, string> {
  const out: Record<string, string> = {};
  for (const text of p.flags.get('-o') ?? []) {
    for (const [k, v] of splitOptionString(text)) out[k] = v ?? 'on';
  }
  return out;
}

export function parseOffset(text: string, what: string): number {
  return parseSize(text, what);
}

export function progressPrinter(io: Io, enabled: boolean): ((done: number, total: number) => void) | undefined {
  if (!enabled) return undefined;
  let lastPct = -1;
  return (done, total) => {
    const pct = total ? Math.floor((done * 100) / total) : 100;
    if (pct !== lastPct) {
      lastPct = pct;
      io.err(`    (${pct.toFixed(2)}/100%)\r`);
    }
  };
}

