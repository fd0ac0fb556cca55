/**
 * `diskwright partitions`, `ls` and `cp`: what is inside a disk image, read without mounting anything. Paths
 * inside a disk are written IMAGE[:PARTITION]:/PATH, after mtools' and e2tools' habits.
 */
import { existsSync } from 'node:fs';
import { DiskError } from '../block/errors';
import { formatSize } from '../block/sizes';
import type { DiskLayout, FileEntry, PartitionInfo } from '../inside/types';
import { has, parseArgs } from './args';
import { BACKING, formatArg, outputArg, progressPrinter, type Io } from './common';
import { toJson } from './output';

/**
 * Splits IMAGE[:N]:/PATH. An image name may itself hold ':' or ':/', so the first split whose image part names an
 * existing file wins.
 */
export function splitInsidePath(spec: string): { image: string; partition?: number; inner: string } {
  const candidates: Array<{ image: string; partition?: number; inner: string }> = [];
  for (let i = spec.indexOf(':/'); i >= 0; i = spec.indexOf(':/', i + 1)) {
    const head = spec.slice(0, i);
    const inner = spec.slice(i + 1);
    const m = /^(.*):(\d+)$/.exec(head);
    if (m) candidates.push({ image: m[1], partition: Number(m[2]), inner });
    candidates.push({ image: head, inner });
  }
  if (!candidates.length) throw new DiskError('EINVAL', `'${spec}': expecting IMAGE:/PATH or IMAGE:PARTITION:/PATH`);
  return candidates.find((c) => existsSync(c.image)) ?? candidates[0];
}

/** The JSON shape of `partitions --output json` (the issue's: start and size in bytes, blkid's words for file systems). */
function layoutJson(l: DiskLayout): unknown {
  return {
    table: l.table,
    'sector-size': l.sectorSize,
    size: l.size,
    ...(l.id ? { id: l.id } : {}),
    partitions: l.partitions.map((p) => ({
      number: p.number,
      start: p.start,
      size: p.size,
      type: p.type,
      ...(p.name !== undefined ? { name: p.name } : {}),
      ...(p.uuid ? { uuid: p.uuid } : {}),
      bootable: p.bootable ?? false,
      ...(p.kind ? { kind: p.kind } : {}),
      ...(p.filesystem
        ? {
            filesystem: {
              type: p.filesystem.type,
              ...(p.filesystem.version ? { version: p.filesystem.version } : {}),
              ...(p.filesystem.label !== undefined ? { label: p.filesystem.label } : {}),
              ...(p.filesystem.uuid ? { uuid: p.filesystem.uuid } : {}),
              size: p.filesystem.size,
              ...(p.filesystem['blockSize'] ? { 'block-size': p.filesystem.blockSize } : {}),
              ...(p.filesystem.used !== undefined ? { used: p.filesystem.used } : {}),
              ...(p.filesystem.volumeGroup ? { 'volume-group': p.filesystem.volumeGroup } : {}),
              ...(p.filesystem.flags?.length ? { flags: p.filesystem.flags } : {}),
              ...(p.filesystem.firstBytes ? { 'first-bytes': p.filesystem.firstBytes } : {}),
            },
          }
        : {}),
    })),
    findings: l.findings,
    ...(l.firstBytes !== undefined ? { 'first-bytes': l.firstBytes } : {}),
  };
}

function fsText(p: PartitionInfo): string {
  const f = p.filesystem;
  if (!f) return p.kind === 'extended' ? '(extended)' : '';
  if (f.type === 'unknown') return `unknown${f.firstBytes ? ` (starts ${f.firstBytes.slice(0, 23)})` : ''}`;
  const bits = [f.version && f.type === 'vfat' ? `vfat (${f.version})` : f.type];
  if (f.label) bits.push(`"${f.label}"`);
  if (f.used !== undefined && f.size) bits.push(`${formatSize(f.used)} of ${formatSize(f.size)} used`);
  if (f.volumeGroup) bits.push(`VG ${f.volumeGroup}`);
  if (f.flags?.length) bits.push(`[${f.flags.join('; ')}]`);
  return bits.join(' ');
}

function layoutText(l: DiskLayout): string {
  const lines = [`Disk: ${formatSize(l.size)}, ${l.table === null ? 'no partition table' : `${l.table.toUpperCase()} partition table`}, ${l.sectorSize}-byte sectors${l.id ? `, id ${l.id}` : ''}`];
  if (l.partitions.length) {
    lines.push(`${'#'.padStart(3)}  ${'Start'.padStart(14)}  ${'Size'.padStart(10)}  ${'Type'.padEnd(36)}  File system`);
    for (const p of l.partitions) {
      const num = p.number === 0 ? '-' : String(p.number);
      const type = p.number === 0 ? '(whole disk)' : p.type + (p.name ? ` "${p.name}"` : '') + (p.bootable ? ' *' : '');
      lines.push(`${num.padStart(3)}  ${String(p.start).padStart(14)}  ${formatSize(p.size).padStart(10)}  ${type.padEnd(36)}  ${fsText(p)}`);
    }
  }
  for (const f of l.findings) lines.push(`${f.severity}: ${f.message}`);
  return lines.join('\n');
}

export async function cmdPartitions(argv: string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { withValue: ['-f', '--output'], boolean: ['-U'] }, 'partitions');
  if (p.positional.length !== 1) throw new DiskError('EINVAL', 'partitions: expecting one image file name');
  const { listPartitions } = await import('../services/inside');
  const layout = await listPartitions({ path: p.positional[0], format: formatArg(p), backingPolicy: BACKING });
  io.out(outputArg(p) === 'json' ? toJson(layoutJson(layout)) : layoutText(layout));
  return 0;
}

function entryLine(e: FileEntry): string {
  const kind = e.type === 'dir' ? 'd' : e.type === 'symlink' ? 'l' : e.type === 'file' ? '-' : '?';
  const when = e.mtime ? new Date(e.mtime).toISOString().slice(0, 19).replace('T', ' ') : ''.padEnd(19);
  return `${kind} ${String(e.size).padStart(12)}  ${when}  ${e.name}${e.target !== undefined ? ` -> ${e.target}` : ''}`;
}

export async function cmdLs(argv: string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { withValue: ['-f', '--output'], boolean: ['-U'] }, 'ls');
  if (p.positional.length !== 1) throw new DiskError('EINVAL', 'ls: expecting IMAGE[:PARTITION]:/PATH');
  const where = splitInsidePath(p.positional[0]);
  const { listFiles } = await import('../services/inside');
  const r = await listFiles({ path: where.image, partition: where.partition, inner: where.inner, format: formatArg(p), backingPolicy: BACKING });
  if (outputArg(p) === 'json') io.out(toJson(r.children ?? [r.entry]));
  else io.out((r.children ?? [r.entry]).map(entryLine).join('\n'));
  return 0;
}

export async function cmdCp(argv: string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { withValue: ['-f'], boolean: ['-p', '-q', '-U'] }, 'cp');
  if (p.positional.length !== 2) throw new DiskError('EINVAL', 'cp: expecting IMAGE[:PARTITION]:/PATH and a destination');
  const where = splitInsidePath(p.positional[0]);
  const { copyOut } = await import('../services/inside');
  const r = await copyOut({
    path: where.image,
    partition: where.partition,
    inner: where.inner,
    dest: p.positional[1],
    format: formatArg(p),
    backingPolicy: BACKING,
    signal: io.signal,
    onProgress: progressPrinter(io, has(p, '-p')),
  });
  if (has(p, '-p')) io.err('    (100.00/100%)\n');
  for (const s of r.skipped) io.err(`diskwright: skipped ${s}`);
  if (!has(p, '-q')) io.out(`Copied ${r.files} file(s), ${r.bytes} bytes of data, to ${r.target}`);
  return 0;
}
