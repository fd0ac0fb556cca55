/**
 * Parallels bundles: a .hdd folder whose DiskDescriptor.xml (qemu's docs/interop/prl-xml.txt) lists the
 * images of one storage and the snapshot tree over them. We take the top snapshot and chain its images down
 * to the root through ParentGUID: "Compressed" images are expanding Parallels images, "Plain" ones raw.
 * Reads go through the chain; writes go to the top image only; check goes through every expanding image.
 */
import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import type * as FastXmlParser from 'fast-xml-parser';
import { corrupt, DiskError, toDiskError } from '../../block/errors';
import { reachedPath, within } from '../../block/backing-path';
import { ImageFile, openingChecked } from '../../block/file';
import type { BlockDevice, CheckOptions, CheckReport, HeaderInfo, OpenOptions } from '../../block/types';
import { checkParallels } from './check';
import { openParallels } from './device';
import { HEADER_SIZE, parseHeader, SECTOR } from './layout';

export const DESCRIPTOR_NAME = 'DiskDescriptor.xml';
/** The top snapshot's GUID when the descriptor names none (TopGUID). */
export const PREDEFINED_TOP = '{5fbaabe3-6958-40ff-92a7-860e329aab41}';
const ROOT_PARENT = '{00000000-0000-0000-0000-000000000000}';
/** A descriptor is a few KiB; anything past this is not one. */
const MAX_DESCRIPTOR = 4 << 20;

export interface BundleImage {
  guid: string;
  parent: string;
  type: 'Plain' | 'Compressed';
  /** As written in the descriptor. */
  file: string;
  /** Resolved inside the bundle folder. */
  path: string;
}

export interface Bundle {
  descriptor: string;
  /** Disk size in bytes (Disk_size sectors). */
  size: number;
  /** Storage cluster size in bytes (Blocksize sectors). */
  clusterSize: number;
  top: string;
  /** The chain from the top image down to the root. */
  chain: BundleImage[];
  /** Every snapshot of the tree: GUID → parent GUID. */
  shots: Array<{ guid: string; parent: string }>;
}

/** True when `head` (the file's first bytes) is an XML document whose root is a Parallels disk descriptor. */
export function isDescriptorHead(head: Uint8Array, path: string): boolean {
  if (nodePath.basename(path).toLowerCase() !== DESCRIPTOR_NAME.toLowerCase()) return false;
  const text = new TextDecoder('utf-8', { fatal: false }).decode(head);
  return /^\s*(<\?xml[^>]*\?>\s*)?(<!--[\s\S]*?-->\s*)*<Parallels_disk_image[\s>]/.test(text);
}

const asList = <T>(x: T | T[] | undefined): T[] => (x === undefined ? [] : Array.isArray(x) ? x : [x]);
const text = (x: unknown): string => (typeof x === 'string' || typeof x === 'number' ? String(x).trim() : '');
const guidOf = (x: unknown): string => text(x).toLowerCase();

function sectors(x: unknown, what: string, path: string): number {
  const s = text(x);
  if (!/^\d+$/.test(s) || !Number.isSafeInteger(Number(s) * SECTOR)) throw corrupt(`${path}: ${what} '${s}' is not a number of sectors`, path);
  return Number(s);
}

let xmlParser: typeof FastXmlParser | undefined;
/** The XML parser, loaded on first use: every command would otherwise pay for it at start-up (6 ms). */
function xmlLib(): typeof FastXmlParser {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  xmlParser ??= require('fast-xml-parser') as typeof FastXmlParser;
  return xmlParser;
}

/** Parses a descriptor and walks its chain; every problem is one plain DiskError naming the descriptor. */
export function parseDescriptor(xml: string, path: string): Bundle {
  const bad = (why: string) => corrupt(`${path}: not a usable Parallels disk descriptor: ${why}`, path);
  const { XMLParser, XMLValidator } = xmlLib();
  const valid = XMLValidator.validate(xml);
  if (valid !== true) throw bad(`bad XML (${valid.err.msg} at line ${valid.err.line})`);
  const doc = new XMLParser({ ignoreAttributes: false, parseTagValue: false, processEntities: false }).parse(xml) as Record<string, any>;
  const root = doc.Parallels_disk_image;
  if (!root || typeof root !== 'object') throw bad('no Parallels_disk_image element');
  const params = root.Disk_Parameters ?? {};
  const size = sectors(params.Disk_size, 'Disk_size', path) * SECTOR;
  if (text(params.Padding) !== '' && text(params.Padding) !== '0') throw new DiskError('EUNSUPPORTED', `${path}: disks with Padding ${text(params.Padding)} are not supported (only 0 is)`, path);
  const storages = asList(root.StorageData?.Storage);
  if (storages.length === 0) throw bad('no Storage element');
  if (storages.length > 1) throw new DiskError('EUNSUPPORTED', `${path}: split storages (${storages.length} Storage elements) are not supported`, path);
  const storage = storages[0];
  const clusterSize = sectors(storage.Blocksize, 'Blocksize', path) * SECTOR;
  const dir = nodePath.dirname(nodePath.resolve(path));
  const images = new Map<string, Omit<BundleImage, 'parent'>>();
  for (const im of asList<any>(storage.Image)) {
    const guid = guidOf(im?.GUID);
    const type = text(im?.Type);
    const file = text(im?.File);
    if (!guid || !file) throw bad('an Image without GUID or File');
    if (type !== 'Plain' && type !== 'Compressed') throw bad(`image ${guid} has Type '${type}' (Plain or Compressed expected)`);
    const full = nodePath.resolve(dir, file);
    const rel = nodePath.relative(dir, full);
    if (rel.startsWith('..') || nodePath.isAbsolute(rel)) throw new DiskError('EOUTSIDE', `${path}: image ${file} lies outside the bundle folder`, path);
    images.set(guid, { guid, type, file, path: full });
  }
  const snaps = root.Snapshots ?? {};
  const shots = asList<any>(snaps.Shot).map((s) => ({ guid: guidOf(s?.GUID), parent: guidOf(s?.ParentGUID) || ROOT_PARENT }));
  const top = guidOf(snaps.TopGUID) || PREDEFINED_TOP;
  const chain: BundleImage[] = [];
  const seen = new Set<string>();
  for (let guid = top; guid !== ROOT_PARENT; ) {
    if (seen.has(guid)) throw bad(`the snapshots' ParentGUIDs loop back to ${guid}`);
    seen.add(guid);
    const im = images.get(guid);
    if (!im) throw bad(`snapshot ${guid} names no Image of the storage`);
    const shot = shots.find((s) => s.guid === guid);
    const parent = shot ? shot.parent : ROOT_PARENT;
    chain.push({ ...im, parent });
    guid = parent;
  }
  const below = chain.slice(0, -1).find((im) => im.type !== 'Compressed');
  if (below) throw bad(`image ${below.file} is ${below.type} but has a parent (overlays must be Compressed)`);
  return { descriptor: path, size, clusterSize, top, chain, shots };
}

/** Reads and parses a descriptor, and makes sure every image of the chain is there. */
export async function readBundle(path: string): Promise<Bundle> {
  const file = await ImageFile.open(path, false);
  let xml: string;
  try {
    if (file.size > MAX_DESCRIPTOR) throw corrupt(`${path}: ${file.size} bytes is too large for a Parallels disk descriptor`, path);
    xml = new TextDecoder().decode(await file.readBlock(0, file.size, 'disk descriptor'));
  } finally {
    await file.close();
  }
  const b = parseDescriptor(xml, path);
  // The descriptor names its images inside the bundle; what decides is where each name leads. A member that is
  // a link to a file outside the folder is refused (it would be read, and a repair would write to it), and the
  // others are opened by their real paths under openingChecked, so a link swapped in later does not pass.
  const realDir = reachedPath(nodePath.dirname(nodePath.resolve(path)));
  for (const im of b.chain) {
    const st = await fsp.stat(im.path).catch(() => undefined);
    if (!st?.isFile()) throw corrupt(`${path}: image ${im.file} of the bundle is missing`, path);
    const real = reachedPath(im.path);
    if (!within(realDir, real)) throw new DiskError('EOUTSIDE', `${path}: image ${im.file} of the bundle is a link to ${real}, outside the bundle folder; not following it`, path);
    im.path = real;
  }
  return b;
}

/** The DiskDescriptor.xml of a .hdd folder, if it has one. */
export async function descriptorIn(dir: string): Promise<string | undefined> {
  const p = nodePath.join(dir, DESCRIPTOR_NAME);
  const st = await fsp.stat(p).catch(() => undefined);
  if (!st?.isFile()) return undefined;
  // A descriptor that links out of the bundle is not this bundle's.
  const real = reachedPath(p);
  if (!within(reachedPath(dir), real)) throw new DiskError('EOUTSIDE', `${dir}: its ${DESCRIPTOR_NAME} is a link to ${real}, outside the bundle folder; not following it`, dir);
  return real === nodePath.resolve(p) ? p : real;
}

/**
 * Opens a bundle: the chain from the root up, each image over the one below it, the top one as asked
 * (writable or not); the others read-only, as the spec says. A Plain image is opened as raw through the
 * registry (opts.openBacking); Compressed ones are Parallels images over the device below them.
 */
export async function openBundle(descriptor: string, opts: OpenOptions): Promise<BlockDevice> {
  const b = await readBundle(descriptor);
  let dev: BlockDevice | undefined;
  try {
    for (let i = b.chain.length - 1; i >= 0; i--) {
      const im = b.chain[i];
      const readOnly = i > 0 || opts.readOnly;
      const below = dev;
      dev = undefined; // openParallels closes `below` when it fails
      // The descriptor's Disk_size is the disk's size, as Parallels takes it, whatever the top image's header
      // (or a Plain one's file length) says.
      const size = i === 0 ? b.size : undefined;
      dev = await openingChecked(im.path, () => (im.type === 'Plain' ? opts.openBacking(im.path, 'raw', readOnly, size) : openParallels(im.path, { ...opts, readOnly }, below, size)));
    }
    return dev!;
  } catch (err) {
    await dev?.close();
    throw toDiskError(err, descriptor);
  }
}

/** What `info` shows for a bundle: the disk, its chain and its snapshot tree. */
/**
 * The size the top image's own header gives (a Plain image's: its file's length in whole sectors), when it
 * differs from the descriptor's Disk_size (which wins, as in Parallels): what info and check say. Undefined
 * when they agree.
 */
export async function headerSizeMismatch(b: Bundle): Promise<{ file: string; headerSize: number; plain?: true } | undefined> {
  const top = b.chain[0];
  if (top.type === 'Plain') {
    const length = Math.ceil((await fsp.stat(top.path)).size / SECTOR) * SECTOR;
    return length === b.size ? undefined : { file: top.file, headerSize: length, plain: true };
  }
  const f = await openingChecked(top.path, () => ImageFile.open(top.path, false));
  try {
    const h = parseHeader(await f.readBlock(0, Math.min(HEADER_SIZE, f.size), 'parallels header'), top.path);
    const headerSize = h.nbSectors * SECTOR;
    return headerSize === b.size ? undefined : { file: top.file, headerSize };
  } finally {
    await f.close();
  }
}

/** The sentence info and check say when the two sizes differ. */
function mismatchNote(b: Bundle, m: { file: string; headerSize: number; plain?: true }): string {
  const other = m.plain ? `the Plain image ${m.file} is ${m.headerSize} bytes long` : `the header of ${m.file} says ${m.headerSize}`;
  return `the descriptor says the disk is ${b.size} bytes but ${other}; the descriptor's size is used, as Parallels does`;
}

export async function describeBundle(file: ImageFile): Promise<HeaderInfo> {
  const b = await readBundle(file.path);
  const mismatch = await headerSizeMismatch(b);
  let actual = file.size;
  for (const im of b.chain) actual += ((await fsp.stat(im.path)).blocks ?? 0) * 512;
  return {
    format: 'parallels',
    'virtual-size': b.size,
    'cluster-size': b.clusterSize,
    'dirty-flag': false,
    'actual-size': actual,
    'format-specific': {
      type: 'parallels',
      data: {
        subformat: 'bundle',
        descriptor: nodePath.basename(b.descriptor),
        'top-guid': b.top,
        chain: b.chain.map((im) => ({ guid: im.guid, type: im.type, file: im.file })),
        snapshots: b.shots.map((s) => ({ guid: s.guid, 'parent-guid': s.parent, ...(b.chain.some((im) => im.guid === s.guid) ? { 'in-chain': true } : {}) })),
        ...(mismatch ? { 'header-size': mismatch.headerSize, 'size-note': mismatchNote(b, mismatch) } : {}),
      },
    },
    'data-readable': true,
  };
}

/**
 * Creates a bundle folder `dir` (which must not exist): one expanding image under the predefined top GUID,
 * named as Parallels names them (NAME.hdd.0.{GUID}.hds, NAME.hdd being `bundleName`, the folder's final
 * name), and its DiskDescriptor.xml. The image is made by
 * `makeImage` (the single-file create), so its bytes are qemu-img's.
 */
export async function createBundle(dir: string, bundleName: string, makeImage: (path: string) => Promise<ParallelsHeaderLike>): Promise<void> {
  await fsp.mkdir(dir).catch((err) => {
    throw toDiskError(err, dir);
  });
  const name = `${bundleName}.0.${PREDEFINED_TOP}.hds`;
  const h = await makeImage(nodePath.join(dir, name));
  const heads = 16;
  const perCylinder = 32;
  const xml = `<?xml version='1.0' encoding='UTF-8'?>
<Parallels_disk_image Version="1.0">
    <Disk_Parameters>
        <Disk_size>${h.nbSectors}</Disk_size>
        <Cylinders>${Math.floor(h.nbSectors / heads / perCylinder)}</Cylinders>
        <Heads>${heads}</Heads>
        <Sectors>${perCylinder}</Sectors>
        <Padding>0</Padding>
    </Disk_Parameters>
    <StorageData>
        <Storage>
            <Start>0</Start>
            <End>${h.nbSectors}</End>
            <Blocksize>${h.tracks}</Blocksize>
            <Image>
                <GUID>${PREDEFINED_TOP}</GUID>
                <Type>Compressed</Type>
                <File>${name}</File>
            </Image>
        </Storage>
    </StorageData>
    <Snapshots>
        <Shot>
            <GUID>${PREDEFINED_TOP}</GUID>
            <ParentGUID>${ROOT_PARENT}</ParentGUID>
        </Shot>
    </Snapshots>
</Parallels_disk_image>
`;
  const file = await ImageFile.create(nodePath.join(dir, DESCRIPTOR_NAME));
  try {
    await file.write(0, new TextEncoder().encode(xml));
    await file.sync();
  } finally {
    await file.close();
  }
}

/** What createBundle needs from the image it made. */
export interface ParallelsHeaderLike {
  nbSectors: number;
  tracks: number;
}

/**
 * Checks (and repairs) every expanding image of a bundle's chain, one after the other, as one report: counts
 * add up, each problem line names its image. Plain (raw) images have nothing to check.
 */
export async function checkBundle(descriptor: string, mode: 'none' | 'leaks' | 'all', opts: CheckOptions): Promise<CheckReport> {
  const b = await readBundle(descriptor);
  const total: CheckReport = { filename: descriptor, format: 'parallels', 'check-errors': 0, corruptions: 0, leaks: 0, 'corruptions-fixed': 0, 'leaks-fixed': 0, problems: [] };
  const mismatch = await headerSizeMismatch(b);
  // A Plain image's length is said but not counted: a raw file has no header to be wrong, and its bytes past
  // the disk's end (or the zeros after its own end) are all the descriptor's size changes.
  if (mismatch?.plain) total.problems.push({ severity: 'error', message: `Warning: ${mismatchNote(b, mismatch)}` });
  else if (mismatch) {
    total.corruptions += 1;
    total.problems.push({ severity: 'corruption', message: mismatchNote(b, mismatch) });
  }
  for (const im of b.chain) {
    if (im.type !== 'Compressed') continue;
    const r = await openingChecked(im.path, () => checkParallels(im.path, mode, opts));
    total['check-errors'] += r['check-errors'];
    total.corruptions += r.corruptions;
    total.leaks += r.leaks;
    total['corruptions-fixed'] += r['corruptions-fixed'];
    total['leaks-fixed'] += r['leaks-fixed'];
    for (const p of r.problems) total.problems.push({ ...p, message: `${im.file}: ${p.message}` });
  }
  return total;
}
