/**
 * Named targets: "a disk for Azure", "for ESXi", "for Hyper-V", "for VirtualBox", "for KVM". A person moving a
 * disk between hypervisors should not need to know that Azure takes only a fixed VHD whose size is a whole
 * number of MiB with the footer's current size equal to it; the target says it once, for convert (the format,
 * its options, the size it must have) and for lint (what an existing image does wrong for that target).
 *
 * The rules are the hosts' documented requirements:
 * - Azure: fixed VHD ("conectix" footer, disk type fixed), virtual size a multiple of 1 MiB, the footer's
 *   current size equal to it (no CHS rounding: qemu-img's force_size), the file inside one page blob (8 TiB).
 * - ESXi: a VMDK in VMware's own stream layout (streamOptimized, what OVF/OVA import takes) or monolithicSparse
 *   (what vmkfstools -i clones), one extent, no parent.
 * - Hyper-V: VHDX, dynamic (Generation 2 VMs also take 4 KiB logical sectors).
 * - VirtualBox: VDI, dynamic.  KVM: qcow2 version 3 (compat 1.1).
 */
import type { FormatName, HostTargetChoice, HostTargetFinding, HostTargetName, HostTargetPlan, HostTargetReport, HostTargetSummary, ImageInfo } from '../../src-shared/api';
import { DiskError } from '../block/errors';
import { driverFor, isFormatName } from '../registry';

export type TargetName = HostTargetName;

const MiB = 1024 * 1024;
/** Azure page blobs hold at most 8 TiB; the VHD's 512-byte footer shares the blob with the disk. */
export const AZURE_PAGE_BLOB_MAX = 8 * 1024 * 1024 * MiB;
const VHD_FOOTER = 512;
/** The largest virtual size an Azure fixed VHD can have: a whole number of MiB that leaves room for the footer. */
export const AZURE_MAX_VIRTUAL = Math.floor((AZURE_PAGE_BLOB_MAX - VHD_FOOTER) / MiB) * MiB;

/** One thing a target would refuse, in a person's words, and whether lint --fix can put it right safely. */
export type TargetFinding = HostTargetFinding;
export type TargetChoice = HostTargetChoice;

export interface TargetPlan {
  format: FormatName;
  options: Record<string, string>;
  /** The target's virtual size (Azure rounds the source's up to a whole MiB). */
  size: number;
  /** Lines worth telling the person (the size rounded, a controller choice explained). */
  notes: string[];
}

export interface TargetSpec {
  name: TargetName;
  label: string;
  description: string;
  format: FormatName;
  /** The format, options and size a convert for this target uses, for a source of `size` bytes. */
  plan(size: number, choice: TargetChoice): TargetPlan;
  /** What this target would refuse in an existing image (from what `info` reads of it). */
  lint(info: ImageInfo, fileSize: number): TargetFinding[];
}

type Data = Record<string, unknown>;
const dataOf = (info: ImageInfo): Data => ((info['format-specific'] as { data?: Data } | undefined)?.data ?? {});
const wrongFormat = (info: ImageInfo, want: string, label: string): TargetFinding[] =>
  info.format === want ? [] : [{ rule: 'format', message: `${label} takes ${driverFor(want).label} images; this one is ${formatLabel(info.format)} (convert it for ${label})`, fixable: false }];
/** A format's name as the app writes it (its driver's label), or the name info gave when no driver has it. */
const formatLabel = (format: string): string => (isFormatName(format) ? driverFor(format).label : format);
/** A size in a finding: whole MiB as MiB, else the bytes with their digits grouped ("16,781,312 bytes"). */
const size = (n: number) => (n % MiB === 0 ? `${n / MiB} MiB` : `${n.toLocaleString('en-US')} bytes`);

const azure: TargetSpec = {
  name: 'azure',
  label: 'Azure',
  description: 'Fixed VHD, a whole number of MiB, for upload as a page blob or managed disk',
  format: 'vpc',
  plan(n) {
    const rounded = Math.ceil(n / MiB) * MiB;
    if (rounded > AZURE_MAX_VIRTUAL) {
      throw new DiskError('EINVAL', `the disk is ${size(n)}; Azure takes a VHD of at most ${AZURE_MAX_VIRTUAL / MiB} MiB (a page blob holds 8 TiB, footer included)`);
    }
    const notes = rounded === n ? [] : [`the virtual size is rounded up from ${n} to ${rounded} bytes (${rounded - n} bytes more, zeros at the end): Azure takes whole MiB`];
    return { format: 'vpc', options: { subformat: 'fixed', force_size: 'on' }, size: rounded, notes };
  },
  lint(info, fileSize) {
    const out = wrongFormat(info, 'vpc', 'Azure');
    if (out.length) return out;
    const d = dataOf(info);
    const v = info['virtual-size'];
    // A fixed VHD's size, footer and length are put right by one resize (lint --fix): grown to the next whole
    // MiB, the footer saying it; a dynamic one would need a new block table, so it is converted instead.
    const fixed = d.subformat === 'fixed';
    if (!fixed) out.push({ rule: 'subformat', message: `Azure takes only fixed VHDs; this one is ${String(d.subformat)} (convert it for Azure)`, fixable: false });
    if (v % MiB !== 0) {
      out.push({ rule: 'size-mib', message: `the virtual size ${size(v)} is not a whole number of MiB; Azure refuses it (the next whole MiB is ${size(Math.ceil(v / MiB) * MiB)})`, fixable: fixed });
    }
    if (d['current-size'] !== undefined && d['current-size'] !== v) {
      const current = typeof d['current-size'] === 'number' ? size(d['current-size']) : String(d['current-size']);
      out.push({ rule: 'current-size', message: `the footer's current size (${current}) differs from the size the disk has by its CHS geometry (${size(v)}); Azure reads the current size`, fixable: fixed });
    }
    if (fixed && fileSize !== v + VHD_FOOTER) out.push({ rule: 'file-size', message: `a fixed VHD is its data and a 512-byte footer: expected ${v + VHD_FOOTER} bytes, the file has ${fileSize}`, fixable: true });
    if (v > AZURE_MAX_VIRTUAL) out.push({ rule: 'limit', message: `the disk is larger than Azure's page blob limit (${AZURE_MAX_VIRTUAL / MiB} MiB)`, fixable: false });
    return out;
  },
};

const esxi: TargetSpec = {
  name: 'esxi',
  label: 'VMware ESXi',
  description: 'VMDK in VMware’s stream layout (OVF/OVA import) or monolithicSparse (vmkfstools -i)',
  format: 'vmdk',
  plan(n, choice) {
    const subformat = choice.subformat ?? 'streamOptimized';
    if (subformat !== 'streamOptimized' && subformat !== 'monolithicSparse') throw new DiskError('EINVAL', `ESXi takes a streamOptimized or monolithicSparse VMDK, not ${subformat}`);
    const notes = choice.adapter === 'pvscsi' ? ['the disk says lsilogic, as VMware writes it for SCSI disks; choose "VMware Paravirtual" as the VM\'s SCSI controller'] : [];
    return { format: 'vmdk', options: { subformat, adapter_type: 'lsilogic' }, size: n, notes };
  },
  lint(info) {
    const out = wrongFormat(info, 'vmdk', 'ESXi');
    if (out.length) return out;
    const d = dataOf(info);
    const type = String(d['create-type']);
    if (type !== 'streamOptimized' && type !== 'monolithicSparse') out.push({ rule: 'subformat', message: `ESXi imports streamOptimized (OVF/OVA) or clones monolithicSparse (vmkfstools -i); this VMDK is ${type}`, fixable: false });
    if (Array.isArray(d.extents) && d.extents.length !== 1) out.push({ rule: 'extents', message: `the VMDK has ${d.extents.length} extents; an upload takes one file`, fixable: false });
    if (info['backing-filename'] !== undefined) out.push({ rule: 'parent', message: 'the VMDK has a parent; ESXi needs a disk that stands alone (convert it, which merges the chain)', fixable: false });
    return out;
  },
};

const hyperv: TargetSpec = {
  name: 'hyperv',
  label: 'Hyper-V',
  description: 'Dynamic VHDX (4 KiB logical sectors for Generation 2 VMs on request)',
  format: 'vhdx',
  plan(n, choice) {
    return { format: 'vhdx', options: { subformat: 'dynamic', ...(choice.logicalSector4k ? { logical_sector_size: '4096' } : {}) }, size: n, notes: [] };
  },
  lint(info) {
    const out = wrongFormat(info, 'vhdx', 'Hyper-V');
    if (out.length) return out;
    const d = dataOf(info);
    if (d['log-needs-replay'] === true) out.push({ rule: 'log', message: 'the VHDX log has entries to replay (it was not closed cleanly); open it once read-write or repair it', fixable: false });
    if (info['virtual-size'] % 512 !== 0) out.push({ rule: 'size', message: 'the virtual size is not a whole number of sectors', fixable: false });
    return out;
  },
};

const virtualbox: TargetSpec = {
  name: 'virtualbox',
  label: 'VirtualBox',
  description: 'Dynamic VDI',
  format: 'vdi',
  plan: (n) => ({ format: 'vdi', options: { static: 'off' }, size: n, notes: [] }),
  lint(info) {
    const out = wrongFormat(info, 'vdi', 'VirtualBox');
    if (out.length) return out;
    const d = dataOf(info);
    if (d.subformat === 'differencing') out.push({ rule: 'parent', message: 'a differencing VDI needs its parent registered in VirtualBox; convert it to stand alone', fixable: false });
    return out;
  },
};

const kvm: TargetSpec = {
  name: 'kvm',
  label: 'KVM / QEMU',
  description: 'qcow2 version 3',
  format: 'qcow2',
  plan: (n) => ({ format: 'qcow2', options: { compat: '1.1' }, size: n, notes: [] }),
  lint(info) {
    const out = wrongFormat(info, 'qcow2', 'KVM');
    if (out.length) return out;
    const d = dataOf(info);
    if (d.compat !== '1.1') out.push({ rule: 'compat', message: `qcow2 version 2 (compat ${String(d.compat)}): readable, but without zero clusters or lazy refcounts; qemu-img amend -o compat=1.1 upgrades it`, fixable: false });
    if (d.corrupt === true) out.push({ rule: 'corrupt', message: 'the image is marked corrupt; repair it (check -r all)', fixable: false });
    return out;
  },
};

export const TARGETS: readonly TargetSpec[] = [azure, esxi, hyperv, virtualbox, kvm];

export function targetFor(name: string): TargetSpec {
  const t = TARGETS.find((x) => x.name === name);
  if (!t) throw new DiskError('EINVAL', `unknown target '${name}' (known: ${TARGETS.map((x) => x.name).join(', ')})`);
  return t;
}

export interface LintResult {
  target: TargetName;
  path: string;
  findings: TargetFinding[];
  /** What --fix changed, one line each. */
  fixed: string[];
}

/** Checks an existing image against a target's rules; with `fix`, puts right what can be put right safely. */
export async function lintImage(path: string, target: string, opts: { format?: string; fix?: boolean } = {}): Promise<LintResult> {
  const spec = targetFor(target);
  const { inspectImage } = await import('./info');
  const { promises: fsp } = await import('node:fs');
  // Without -f, the image is first read as the target's format: a fixed VHD has no header at its start, so
  // probing (as qemu-img's) calls it raw, and "Azure takes VHD images; this one is raw" would be wrong.
  const format = opts.format ?? (await inspectImage(path, { format: spec.format }).then(() => spec.format, () => undefined));
  const look = async () => {
    const info = await inspectImage(path, { format });
    return spec.lint(info, (await fsp.stat(path)).size);
  };
  let findings = await look();
  const fixed: string[] = [];
  if (opts.fix && findings.some((f) => f.fixable)) {
    // Every fixable rule today is a fixed VHD's size, footer or length: one resize to the next whole MiB puts
    // them all right (resize.ts in formats/vpc writes the footer saying it, at the end of the data).
    const { resizeImage } = await import('./resize');
    const info = await inspectImage(path, { format });
    const from = info['virtual-size'];
    const to = Math.ceil(from / MiB) * MiB;
    await resizeImage({ path, format, size: to });
    fixed.push(to === from ? `rewrote the footer: current size ${to} bytes, the file its data and one footer` : `grew the disk from ${from} to ${to} bytes (${to - from} bytes of zeros at the end); the footer says ${to}`);
    findings = await look();
  }
  return { target: spec.name, path, findings, fixed };
}

/** The targets as the app offers them. */
export function targetSummaries(): HostTargetSummary[] {
  return TARGETS.map((t) => ({ name: t.name, label: t.label, description: t.description, format: t.format }));
}

/** What a convert of `source` for `target` will make (the app's review step says it before anything is written). */
export async function planForSource(source: string, target: HostTargetName, choice: HostTargetChoice, opts: { backingPolicy?: import('../block/types').BackingPolicy } = {}): Promise<HostTargetPlan & { options: Record<string, string> }> {
  const spec = targetFor(target);
  const { inspectImage } = await import('./info');
  const info = await inspectImage(source, { backingPolicy: opts.backingPolicy });
  const p = spec.plan(info['virtual-size'], choice);
  return { target, format: p.format, size: p.size, notes: p.notes, options: p.options };
}

/** The "Ready for …" card: lint without fixing. */
export async function readyFor(path: string, target: HostTargetName): Promise<HostTargetReport> {
  const r = await lintImage(path, target);
  return { target, label: targetFor(target).label, findings: r.findings };
}
