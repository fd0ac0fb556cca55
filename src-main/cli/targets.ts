/**
 * The named targets on the command line: `convert --target NAME` (the format, options and size a hypervisor or
 * cloud takes, from services/targets.ts) and `lint --target NAME [--fix] IMAGE` (what it would refuse).
 */
import { DiskError } from '../block/errors';
import { has, last, parseArgs, type ParsedArgs } from './args';
import { formatArg, need, optionsArg, outputArg, type Io } from './common';
import { toJson } from './output';

export interface TargetedConvert {
  targetFormat: string;
  options: Record<string, string>;
  targetSize: number;
  notes: string[];
}

/** convert --target NAME: -O is implied; -o may only choose what the target leaves open (ESXi's subformat and controller, Hyper-V's sector size). */
export async function planTargetedConvert(p: ParsedArgs, source: string, sourceFormat: string | undefined): Promise<TargetedConvert> {
  const name = last(p, '--target')!;
  if (last(p, '-O') !== undefined) throw new DiskError('EINVAL', `convert: --target ${name} chooses the format; leave out -O`);
  if (has(p, '-c')) throw new DiskError('EINVAL', `convert: --target ${name} writes what the target takes; leave out -c`);
  const { targetFor } = await import('../services/targets');
  const spec = targetFor(name);
  const given = optionsArg(p);
  const allowed = new Set(['subformat', 'adapter_type', 'logical_sector_size']);
  for (const k of Object.keys(given)) if (!allowed.has(k)) throw new DiskError('EINVAL', `convert --target ${name}: the target sets '${k}' itself`);
  const adapter = given.adapter_type;
  if (adapter !== undefined && adapter !== 'lsilogic' && adapter !== 'pvscsi') throw new DiskError('EINVAL', `convert --target ${name}: adapter_type is lsilogic or pvscsi`);
  const { inspectImage } = await import('../services/info');
  const info = await inspectImage(source, { format: sourceFormat });
  const plan = spec.plan(info['virtual-size'], { subformat: given.subformat, adapter: adapter as 'lsilogic' | 'pvscsi' | undefined, logicalSector4k: given.logical_sector_size === '4096' });
  return { targetFormat: plan.format, options: plan.options, targetSize: plan.size, notes: plan.notes };
}

export async function cmdLint(argv: string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { withValue: ['-f', '--target', '--output'], boolean: ['--fix'] }, 'lint');
  need(p, 1, 'lint', 'an image file name');
  const target = last(p, '--target');
  if (target === undefined) throw new DiskError('EINVAL', 'lint: expecting --target NAME (azure, esxi, hyperv, virtualbox, kvm)');
  const output = outputArg(p);
  const { lintImage, targetFor } = await import('../services/targets');
  const r = await lintImage(p.positional[0], target, { format: formatArg(p), fix: has(p, '--fix') });
  if (output === 'json') io.out(toJson(r));
  else {
    for (const line of r.fixed) io.out(`fixed: ${line}`);
    if (r.findings.length === 0) io.out(`${r.path}: ready for ${targetFor(target).label}`);
    for (const f of r.findings) io.out(`${r.path}: ${f.message}${f.fixable ? ' (lint --fix puts it right)' : ''}`);
  }
  return r.findings.length === 0 ? 0 : 2;
}
