/**
 * What a format's details ('format-specific' of inspect, keyed by its `type`) mean, said for people: a
 * table per format of how to label and show each field. The JSON keys stay qemu-img's; only the page
 * changes. A field no table names is shown with its key made readable, so a new field still appears.
 */
import { formatBytes, formatDate, formatExactBytes, humanKey } from './text';

/** One line of the details: a label and what the value means. */
export interface Fact {
  key: string;
  label: string;
  value: string;
  /** The value as stored, where the line says it differently (shown on hover). */
  raw?: string;
}
/** A list of records (VMDK extents, a bundle's chain) as a table. */
export interface FactTable {
  key: string;
  label: string;
  columns: string[];
  rows: string[][];
}
export interface Presented {
  facts: Fact[];
  tables: FactTable[];
}

type Show = (value: unknown) => string;
interface Field {
  label?: string;
  show?: Show;
  /** For a list of records: the columns, each a key of the records with its label and how to show it. */
  columns?: Array<[key: string, label: string, show?: Show]>;
}

const yesNo = (v: unknown) => (v === true ? 'yes' : v === false ? 'no' : plain(v));
const bytes: Show = (v) => (typeof v === 'number' ? formatBytes(v) : plain(v));
/** An offset into the file: where it is, in bytes and in the unit people read. */
const offset: Show = (v) => (typeof v !== 'number' ? plain(v) : v < 1024 ? `byte ${v}` : `byte ${v.toLocaleString('en-US')} (${formatBytes(v)})`);
const oneOf =
  (meanings: Record<string, string>): Show =>
  (v) =>
    meanings[String(v)] ?? plain(v);

/** A size that must be exact (a VHD's current size decides what Azure takes): the bytes, then the unit people read. */
const exactBytes: Show = (v) => (typeof v === 'number' ? `${formatExactBytes(v)} (${formatBytes(v)})` : plain(v));
const count: Show = (v) => (typeof v === 'number' ? v.toLocaleString('en-US') : plain(v));
/** Cylinders, heads and sectors per track, as a BIOS names them. */
const chs: Show = (v) => {
  if (!isRecord(v)) return plain(v);
  const sectors = v['sectors-per-track'] ?? v.sectors;
  return `${count(v.cylinders)} cylinders, ${count(v.heads)} heads, ${count(sectors)} sectors per track`;
};
/** A VHD time stamp as the driver gives it (ISO 8601, UTC): date and time, said to be UTC. */
const utc: Show = (v) => (typeof v === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(v) ? `${v.slice(0, 10)} ${v.slice(11, 19)} UTC` : plain(v));
/** VHD parent locators by their platform codes (MS VHD spec): where each names the parent. */
const VHD_LOCATOR: Record<string, string> = { W2ru: 'Windows, relative', W2ku: 'Windows, absolute', Wi2r: 'Windows, relative (old)', Wi2k: 'Windows, absolute (old)', MacX: 'macOS, URL', Mac: 'Mac alias' };
const locators: Show = (v) =>
  isRecord(v) && Object.keys(v).length
    ? Object.entries(v)
        .map(([code, where]) => `${VHD_LOCATOR[code.trim()] ?? code} (${code}): ${plain(where)}`)
        .join('; ')
    : plain(v);

/** VMDK: CIDs are 32-bit; ffffffff in a parent CID means there is no parent. */
const cid: Show = (v) => (typeof v === 'number' ? v.toString(16).padStart(8, '0') : plain(v));
const NO_PARENT = 0xffffffff;

const VMDK_EXTENT_KIND = oneOf({
  SPARSE: 'sparse (grains allocated as written)',
  FLAT: 'flat (every byte stored)',
  VMFS: 'flat (ESX)',
  VMFSSPARSE: 'sparse, ESX redo log (COWD)',
  SESPARSE: 'space-efficient sparse (ESX)',
  ZERO: 'reads as zeros (no file)',
  '': 'sparse',
});

const VMDK_CREATE_TYPE: Record<string, string> = {
  monolithicSparse: 'one sparse file',
  monolithicFlat: 'one flat file beside its descriptor',
  twoGbMaxExtentSparse: 'sparse, split into files of 2 GiB',
  twoGbMaxExtentFlat: 'flat, split into files of 2 GiB',
  streamOptimized: 'one compressed sparse file, for transport',
  vmfs: 'flat, for ESX',
  vmfsSparse: 'sparse redo log, for ESX',
  seSparse: 'space-efficient sparse, for ESX',
  custom: 'extents as its descriptor lists them',
};

const PRESENTERS: Record<string, Record<string, Field>> = {
  qcow2: {
    compat: { label: 'Compat', show: oneOf({ '0.10': '0.10 (the original version 2 header)', '1.1': '1.1 (version 3 header)' }) },
    'refcount-bits': { label: 'Refcount width', show: (v) => `${plain(v)} bits` },
    'extended-l2': { label: 'Subclusters (extended L2)', show: yesNo },
    corrupt: { label: 'Marked corrupt', show: yesNo },
    'data-file': { label: 'External data file' },
  },
  vmdk: {
    cid: { label: 'Content ID', show: cid },
    'parent-cid': { label: 'Parent content ID', show: (v) => (v === NO_PARENT ? 'none (no parent image)' : cid(v)) },
    'create-type': {
      label: 'Subformat',
      show: (v) => {
        const meaning = VMDK_CREATE_TYPE[String(v)];
        return meaning ? `${plain(v)}: ${meaning}` : plain(v);
      },
    },
    extents: {
      label: 'Extents',
      columns: [
        ['filename', 'File'],
        ['format', 'Kind', VMDK_EXTENT_KIND],
        ['virtual-size', 'Size', bytes],
        ['cluster-size', 'Grain', bytes],
        ['compressed', 'Compressed', yesNo],
      ],
    },
  },
  vhdx: {
    'block-size': { show: bytes },
    'logical-sector-size': { show: bytes },
    'physical-sector-size': { show: bytes },
    'log-size': { show: bytes },
    'log-guid': { label: 'Log', show: (v) => (v === '00000000-0000-0000-0000-000000000000' ? 'empty (no pending writes)' : `pending writes, id ${plain(v)}`) },
    'log-needs-replay': { label: 'Log needs replay', show: yesNo },
    'data-write-guid': { label: 'Data write id' },
    'disk-id': { label: 'Disk id' },
  },
  parallels: {
    subformat: {
      label: 'Header',
      show: oneOf({
        WithoutFreeSpace: 'original header (block table in sectors)',
        WithouFreSpacExt: 'extended header (block table in clusters)',
        bundle: '.hdd bundle (a folder with a descriptor)',
      }),
    },
    'bat-entries': { label: 'Block table entries', show: count },
    'data-offset': { label: 'Data starts at', show: offset },
    'format-extension-offset': { label: 'Format extension at', show: offset },
    empty: { label: 'Empty-image flag', show: (v) => (v === true ? 'set (reads as zeros)' : v === false ? 'clear' : plain(v)) },
    'top-guid': { label: 'Top image' },
    chain: { label: 'Images', columns: [['file', 'File'], ['type', 'Kind'], ['guid', 'Id']] },
    snapshots: { columns: [['guid', 'Id'], ['parent-guid', 'Parent'], ['in-chain', 'In use', yesNo]] },
  },
  vpc: {
    subformat: {
      show: oneOf({ fixed: 'fixed (every byte stored, the footer at the end)', dynamic: 'dynamic (blocks allocated as written)', differencing: 'differencing (writes over a parent image)' }),
    },
    'creator-app': {
      label: 'Made by',
      show: oneOf({ qemu: 'qemu (QEMU)', qem2: 'qem2 (QEMU, size from the current size)', 'vpc ': 'vpc (Virtual PC)', 'vs  ': 'vs (Virtual Server)', 'win ': 'win (Windows, Hyper-V)', 'd2v ': 'd2v (Disk2vhd)', 'tap\\0': 'tap (Xen)', vbox: 'vbox (VirtualBox)', CTXS: 'CTXS (Citrix)' }),
    },
    'creator-os': { label: 'Made on', show: oneOf({ Wi2k: 'Windows (Wi2k)', 'Mac ': 'Mac (Mac)' }) },
    'creator-version': { label: 'Creator version' },
    'size-from': {
      label: 'Guest size from',
      show: oneOf({ geometry: 'the geometry (cylinders × heads × sectors), as Virtual PC reads it', 'current-size': 'the current size field' }),
    },
    geometry: { show: chs },
    'current-size': { show: exactBytes },
    'original-size': { show: exactBytes },
    timestamp: { label: 'Made', show: utc },
    'saved-state': { show: yesNo },
    'block-size': { show: bytes },
    'bat-entries': { label: 'Block table entries', show: count },
    'parent-timestamp': { label: 'Parent last changed', show: utc },
    'parent-locators': { label: 'Parent named as', show: locators },
  },
  vdi: {
    subformat: {
      show: oneOf({ dynamic: 'dynamic (blocks allocated as written)', static: 'static (every block stored)', differencing: 'differencing (writes over a parent image)', undo: 'undo (an old VirtualBox kind)' }),
    },
    text: { label: 'Header text' },
    'header-size': { show: bytes },
    'block-map-offset': { label: 'Block map at', show: offset },
    'data-offset': { label: 'Data starts at', show: offset },
    'blocks-in-image': { label: 'Blocks', show: count },
    'blocks-allocated': { label: 'Blocks allocated', show: count },
    'block-extra': { label: 'Extra data per block', show: bytes },
    'last-modification-uuid': { label: 'Last change UUID' },
    'parent-modification-uuid': { label: 'Parent change UUID' },
    'legacy-geometry': { label: 'Geometry (legacy)', show: chs },
    'lchs-geometry': { label: 'Geometry (logical CHS)', show: chs },
    'parent-missing': { label: 'Parent', show: (v) => (v === true ? 'not found' : plain(v)) },
  },
  cow: {
    layout: { label: 'Header layout' },
    'sector-size': { show: bytes },
    alignment: { show: bytes },
    'bitmap-offset': { label: 'Bitmap at', show: offset },
    'data-offset': { label: 'Data starts at', show: offset },
    'backing-mtime': {
      label: 'Backing file last changed',
      show: (v) => (typeof v === 'number' ? `${formatDate(v)} (when this file was made)` : plain(v)),
    },
  },
};

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A value no table names: yes/no, a list joined, anything else as text. */
function plain(v: unknown): string {
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (v === null || v === undefined || v === '') return '—';
  if (Array.isArray(v)) return v.map(plain).join(', ') || '—';
  if (isRecord(v)) return Object.entries(v).map(([k, x]) => `${humanKey(k)}: ${plain(x)}`).join('; ');
  if (typeof v === 'number') return String(v);
  return String(v);
}

/** The details of one format as facts and tables. */
export function presentDetails(type: string, data: Record<string, unknown>): Presented {
  const fields = PRESENTERS[type] ?? {};
  const out: Presented = { facts: [], tables: [] };
  for (const [key, value] of Object.entries(data)) {
    const field = fields[key] ?? {};
    const label = field.label ?? humanKey(key);
    if (Array.isArray(value) && value.length > 0 && value.every(isRecord)) {
      const columns = field.columns ?? [...new Set(value.flatMap((r) => Object.keys(r)))].map((k): [string, string] => [k, humanKey(k)]);
      // A column no record fills (compressed on a plain extent list) is left out.
      const used = columns.filter(([k]) => value.some((r) => r[k] !== undefined));
      out.tables.push({ key, label, columns: used.map(([, l]) => l), rows: value.map((r) => used.map(([k, , show]) => (r[k] === undefined ? '—' : (show ?? plain)(r[k])))) });
      continue;
    }
    const shown = (field.show ?? plain)(value);
    const raw = typeof value === 'object' ? undefined : String(value);
    out.facts.push({ key, label, value: shown, ...(raw !== undefined && raw !== shown ? { raw } : {}) });
  }
  return out;
}

/**
 * Whether the image's format records a dirty (in use, not closed cleanly) flag at all: qcow2 from version 3
 * (compat 1.1), VHDX (a log to replay), Parallels (the in-use mark). Other formats have none to show, so a "Clear"
 * would claim a check that never happened; a flag that is set is always shown.
 */
export function showsDirtyFlag(info: { format: string; 'dirty-flag': boolean; 'format-specific'?: { data: Record<string, unknown> } }): boolean {
  if (info['dirty-flag']) return true;
  if (info.format === 'qcow2') return info['format-specific']?.data.compat !== '0.10';
  return info.format === 'vhdx' || info.format === 'parallels';
}
