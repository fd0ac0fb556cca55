/**
 * The VHD FormatDriver (qemu's `vpc`): wiring of probe, describe (info), open, create, check and measure. Only the
 * probe and the option list are loaded with it; the rest on first use (`await import`).
 *
 * A dynamic or differencing image starts with its footer copy ("conectix") and is recognised by its first bytes,
 * as qemu recognises it. A fixed image starts with guest data, and qemu-img reads it as raw unless told `-f vpc`;
 * here a file named .vhd or .vpc whose last 512 bytes are a valid fixed-disk footer is taken for a fixed VHD too
 * (with a lower score than any first-bytes match), so an Azure disk opens as what it is.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { ImageFile } from '../../block/file';
import type { BlockDevice, CreateOptions, FormatDriver, HeaderInfo, OpenOptions } from '../../block/types';
import { VPC_CREATE_OPTIONS } from './create-options';

const COOKIE = [0x63, 0x6f, 0x6e, 0x65, 0x63, 0x74, 0x69, 0x78]; // "conectix"

function probeVpc(head: Uint8Array, path: string): number {
  if (head.length >= 8 && COOKIE.every((c, i) => head[i] === c)) return 100;
  return /\.(vhd|vpc)$/i.test(path) && hasFixedFooter(path) ? 50 : 0;
}

/** True when the file's last 512 bytes are a fixed disk's footer: cookie, checksum, type 2, data before it. */
function hasFixedFooter(path: string): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const size = fstatSync(fd).size;
    if (size < 1024) return false;
    const b = new Uint8Array(512);
    if (readSync(fd, b, 0, 512, size - 512) !== 512 || !COOKIE.every((c, i) => b[i] === c)) return false;
    const v = new DataView(b.buffer);
    let sum = 0;
    for (let i = 0; i < 512; i++) if (i < 64 || i >= 68) sum += b[i];
    return v.getUint32(64) === ~sum >>> 0 && v.getUint32(60) === 2;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

async function describe(file: ImageFile): Promise<HeaderInfo> {
  const [{ readVpcLayout }, layout, parent] = await Promise.all([import('./image'), import('./layout'), import('./parent')]);
  const l = await readVpcLayout(file);
  const f = l.footer;
  let backing: string | undefined;
  let locators: Record<string, string> | undefined;
  if (l.diskType === layout.DISK_DIFFERENCING && l.dyn) {
    const texts = await parent.readLocatorTexts(file, l.dyn);
    backing = parent.parentDisplayName(file.path, parent.parentCandidates(texts, l.dyn.header.parentName));
    locators = Object.fromEntries(texts.map((t) => [t.code, t.text]));
  }
  return {
    format: 'vpc',
    'virtual-size': l.virtualSize,
    // qemu-img info shows the block size as the cluster size of a dynamic image, none for a fixed one.
    ...(l.dyn ? { 'cluster-size': l.dyn.blockSize } : {}),
    ...(backing !== undefined ? { 'backing-filename': backing, 'backing-filename-format': 'vpc' } : {}),
    'dirty-flag': false,
    'format-specific': {
      type: 'vpc',
      data: {
        subformat: layout.DISK_TYPE_NAMES[l.diskType],
        'creator-app': f.creatorApp.replace(/\0/g, '\\0'),
        'creator-os': f.creatorOs.replace(/\0/g, '\\0'),
        'creator-version': `${f.creatorVersion >>> 16}.${f.creatorVersion & 0xffff}`,
        'size-from': layout.usesCurrentSize(f) ? 'current-size' : 'geometry',
        geometry: { cylinders: f.cylinders, heads: f.heads, 'sectors-per-track': f.sectorsPerTrack },
        'current-size': Number(f.currentSize),
        'original-size': Number(f.originalSize),
        uuid: f.uuid,
        timestamp: layout.vhdTimeText(f.timestamp),
        'saved-state': f.savedState !== 0,
        ...(l.dyn ? { 'block-size': l.dyn.blockSize, 'bat-entries': l.dyn.bat.length } : {}),
        ...(l.dyn && l.diskType === layout.DISK_DIFFERENCING
          ? { 'parent-uuid': l.dyn.header.parentUuid, 'parent-timestamp': layout.vhdTimeText(l.dyn.header.parentTimestamp), 'parent-name': l.dyn.header.parentName, 'parent-locators': locators }
          : {}),
        ...(l.warnings.length ? { warnings: l.warnings } : {}),
      },
    },
    'data-readable': true,
  };
}

export const vpcDriver: FormatDriver = {
  name: 'vpc',
  label: 'VHD',
  description: 'Virtual PC / Hyper-V / Azure virtual hard disk: fixed, dynamic or differencing',
  extensions: ['vhd', 'vpc'],
  preload: async () => {
    await Promise.all([import('./open'), import('./image'), import('./layout'), import('./parent')]);
  },
  concurrentCalls: false,
  backingFiles: 'optional',
  probe: (head: Uint8Array, path: string) => probeVpc(head, path),
  describe,
  measure: async (size, opts, data) => (await import('./measure')).measureVpc(size, opts, data),
  createOptions: VPC_CREATE_OPTIONS,
  check: async (path, repair, opts) => (await import('./check')).checkVpc(path, repair, opts),
  async open(path: string, opts: OpenOptions): Promise<BlockDevice> {
    return (await import('./open')).openVpc(path, opts);
  },
  async create(path: string, size: number, opts: CreateOptions): Promise<void> {
    return (await import('./create')).createVpc(path, size, opts);
  },
};
