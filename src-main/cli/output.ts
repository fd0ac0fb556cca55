/**
 * What the commands print, in qemu-img's words and layout: info's text, map's and check's text and JSON (four-space
 * indent, qemu-img's keys), the snapshot table. Text output only; the disk formats live in formats/.
 */
import type { ImageInfo, MapEntry, SnapshotInfo } from '../../src-shared/api';
import { formatSize } from '../block/sizes';
import type { CheckReport } from '../block/types';

/** JSON the way qemu-img prints it: four-space indent. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, null, 4);
}

function pad2(n: number): string {
  return String(n).padStart(2, '0');
}

/** One row of qemu-img's snapshot table. */
export function snapshotRow(s: SnapshotInfo): string {
  const d = new Date(s['date-sec'] * 1000);
  const date = `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  const clockMs = s['vm-clock-sec'] * 1000 + Math.floor(s['vm-clock-nsec'] / 1e6);
  const h = Math.floor(clockMs / 3600000);
  const m = Math.floor((clockMs % 3600000) / 60000);
  const sec = Math.floor((clockMs % 60000) / 1000);
  const ms = clockMs % 1000;
  const clock = `${pad2(h)}:${pad2(m)}:${pad2(sec)}.${String(ms).padStart(3, '0')}`;
  return `${s.id.padEnd(10)}${s.name.padEnd(17)}${formatSize(s['vm-state-size']).padStart(8)}${date.padStart(20)}${clock.padStart(13)}${String(s.icount ?? '').padStart(11)}`;
}

export function snapshotTable(list: SnapshotInfo[]): string[] {
  return ['Snapshot list:', 'ID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT', ...list.map(snapshotRow)];
}

function specificLines(data: Record<string, unknown>, indent: string): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(data)) {
    const key = k.replace(/-/g, ' ');
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      out.push(`${indent}${key}:`);
      out.push(...specificLines(v as Record<string, unknown>, indent + '    '));
    } else if (Array.isArray(v) && v.some((x) => x !== null && typeof x === 'object')) {
      // qemu-img lists arrays of objects (VMDK extents, qcow2 bitmaps) as numbered blocks.
      out.push(`${indent}${key}:`);
      v.forEach((item, i) => {
        out.push(`${indent}    [${i}]:`);
        out.push(...specificLines(item as Record<string, unknown>, indent + '        '));
      });
    } else out.push(`${indent}${key}: ${Array.isArray(v) ? JSON.stringify(v) : String(v)}`);
  }
  return out;
}

/** qemu-img info's human output. */
export function infoText(info: ImageInfo): string {
  const lines = [
    `image: ${info.filename}`,
    `file format: ${info.format}`,
    `virtual size: ${formatSize(info['virtual-size'])} (${info['virtual-size']} bytes)`,
    `disk size: ${formatSize(info['actual-size'])}`,
  ];
  if (info.encrypted) lines.push('encrypted: yes');
  if (info['cluster-size'] !== undefined) lines.push(`cluster_size: ${info['cluster-size']}`);
  if (info['backing-filename'] !== undefined) {
    const full = info['full-backing-filename'];
    lines.push(`backing file: ${info['backing-filename']}${full && full !== info['backing-filename'] ? ` (actual path: ${full})` : ''}`);
  }
  if (info['backing-filename-format'] !== undefined) lines.push(`backing file format: ${info['backing-filename-format']}`);
  if (info['dirty-flag']) lines.push('cleanly shut down: no');
  if (info.snapshots?.length) lines.push(...snapshotTable(info.snapshots));
  const fs = info['format-specific'];
  if (fs && Object.keys(fs.data).length) {
    lines.push('Format specific information:', ...specificLines(fs.data, '    '));
  }
  if (!info['data-readable']) lines.push(`note: this build reads the ${info.format} header only; its data cannot be read yet`);
  if (info['locking-unavailable']) lines.push('note: image locking is unavailable (the native helper was not built): other programs are not kept from writing this image while diskwright uses it');
  return lines.join('\n');
}

function hex(n: number): string {
  return n === 0 ? '0' : '0x' + n.toString(16);
}

/** qemu-img map's human output: only runs that hold data, with where they are mapped. */
export function mapText(entries: Array<MapEntry & { filename: string }>): string {
  const lines = ['Offset          Length          Mapped to       File'];
  for (const e of entries) {
    if (!e.data || e.offset === undefined) continue;
    lines.push(`${hex(e.start).padEnd(16)}${hex(e.length).padEnd(16)}${hex(e.offset).padEnd(16)}${e.filename}`);
  }
  return lines.join('\n');
}

/** qemu-img map's JSON output: one object per line inside a list. */
export function mapJson(entries: Array<MapEntry & { filename: string }>): string {
  const rows = entries.map((e) => {
    const off = e.offset !== undefined ? `, "offset": ${e.offset}` : '';
    return `{ "start": ${e.start}, "length": ${e.length}, "depth": ${e.depth}, "present": ${e.present}, "zero": ${e.zero}, "data": ${e.data}${off}}`;
  });
  return `[${rows.join(',\n')}]`;
}

/** qemu-img check's human report. */
export function checkText(r: CheckReport, problemSink?: (line: string) => void): string {
  // As in qemu-img's JSON, corruptions and leaks are what is left (after the double check, when repairing).
  const corruptLeft = r.corruptions;
  const leaksLeft = r.leaks;
  const repaired = r['corruptions-fixed'] > 0 || r['leaks-fixed'] > 0;
  // A repairing pass marks its messages with `fixed`; the double check's messages come after its banner.
  // qemu-img prints each problem on stderr and the summary on stdout; without a sink both go to one text.
  const lines: string[] = [];
  const problems = (msgs: string[]) => (problemSink ? msgs.forEach(problemSink) : lines.push(...msgs));
  problems(r.problems.filter((p) => !repaired || p.fixed !== undefined).map((p) => p.message));
  if (repaired) {
    lines.push(`The following inconsistencies were found and repaired:\n\n    ${r['leaks-fixed']} leaked clusters\n    ${r['corruptions-fixed']} corruptions\n`);
    lines.push('Double checking the fixed image now...');
    problems(r.problems.filter((p) => p.fixed === undefined).map((p) => p.message));
  }
  if (corruptLeft === 0 && leaksLeft === 0 && r['check-errors'] === 0) lines.push('No errors were found on the image.');
  if (corruptLeft > 0) {
    lines.push(`\n${corruptLeft} errors were found on the image.`, 'Data may be corrupted, or further writes to the image may corrupt it.');
  }
  if (leaksLeft > 0) {
    lines.push(`\n${leaksLeft} leaked clusters were found on the image.`, 'This means waste of disk space, but no harm to data.');
  }
  if (r['check-errors'] > 0) lines.push(`\n${r['check-errors']} internal errors have occurred during the check.`);
  const total = r['total-clusters'] ?? 0;
  const allocated = r['allocated-clusters'] ?? 0;
  if (total && allocated) {
    // qemu-img: allocated is a share of all clusters, fragmented and compressed are shares of the allocated ones.
    const pct = (n: number | undefined, of: number) => ((100 * (n ?? 0)) / of).toFixed(2);
    lines.push(
      `${allocated}/${total} = ${pct(allocated, total)}% allocated, ${pct(r['fragmented-clusters'], allocated)}% fragmented, ${pct(r['compressed-clusters'], allocated)}% compressed clusters`,
    );
  }
  if (r['image-end-offset']) lines.push(`Image end offset: ${r['image-end-offset']}`);
  return lines.join('\n');
}

/** check --output json, with qemu-img's keys in qemu-img's order (our per-problem list is left out to keep the shape). */
export function checkJson(r: CheckReport): string {
  const out: Record<string, unknown> = {};
  for (const k of ['image-end-offset', 'compressed-clusters', 'total-clusters', 'corruptions', 'corruptions-fixed', 'check-errors', 'leaks', 'leaks-fixed', 'allocated-clusters', 'filename', 'format', 'fragmented-clusters'] as const) {
    const v = r[k];
    if (v === undefined) continue;
    if ((k === 'leaks' || k === 'corruptions' || k === 'leaks-fixed' || k === 'corruptions-fixed') && v === 0) continue;
    out[k] = v;
  }
  return toJson(out);
}
