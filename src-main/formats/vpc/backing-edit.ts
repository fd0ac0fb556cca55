/**
 * What commit and rebase change in a dynamic or differencing VHD:
 * - the parent (rebase): the W2ru and W2ku locators' data is written into the space the old locators reserved
 *   when it fits, else past the last block (the footer moved after it), then the header names the new parent's
 *   unique id, modification time and file name. The header write is the switch: a crash before it leaves the old
 *   parent named. A dynamic image given a parent becomes differencing, every allocated block's bitmap set first
 *   (a dynamic image reads every sector of an allocated block from the file, so they must keep doing so); a
 *   differencing image made to stand alone becomes dynamic.
 * - the BAT emptied (commit): every entry unused, so every sector reads the parent again; the blocks' space is
 *   given back by cutting the file after the metadata and writing the footer there.
 */
import * as nodePath from 'node:path';
import { DiskError } from '../../block/errors';
import type { ImageFile } from '../../block/file';
import type { VpcLayout } from './image';
import {
  BAT_UNUSED,
  DISK_DIFFERENCING,
  DISK_DYNAMIC,
  encodeLocatorData,
  FOOTER_SIZE,
  LOCATOR_W2KU,
  LOCATOR_W2RU,
  locatorSpaceBytes,
  SECTOR,
  serializeDynamicHeader,
  serializeFooter,
  ZERO_UUID,
  type ParentLocator,
} from './layout';
import { parentFacts, type ParentFacts } from './parent';

export interface EditContext {
  file: ImageFile;
  layout: VpcLayout;
  /** Where the next block would go (the end footer's place). */
  nextFree: number;
  noFlush: boolean;
}

const roundUp = (n: number) => Math.ceil(n / SECTOR) * SECTOR;
const EMPTY_LOCATOR: ParentLocator = { platformCode: 0, dataSpace: 0, dataLength: 0, dataOffset: 0 };

/** The W2ru name for `name` as given (relative to the child's folder), or the facts' relative path. */
function relativeName(name: string, facts: ParentFacts): string {
  if (nodePath.isAbsolute(name)) return facts.relative;
  const w = name.split('/').join('\\');
  return w.startsWith('.\\') || w.startsWith('..\\') ? w : `.\\${w}`;
}

async function sync(ctx: EditContext): Promise<void> {
  if (!ctx.noFlush) await ctx.file.sync();
}

/** Writes the header, and the footer (both copies) when `footerChanged`. */
async function writeHeaderAndFooter(ctx: EditContext, footerChanged: boolean, footerAt: number): Promise<void> {
  const dyn = ctx.layout.dyn!;
  await ctx.file.write(dyn.headerOffset, serializeDynamicHeader(dyn.header));
  if (footerChanged) {
    const f = serializeFooter(ctx.layout.footer);
    await ctx.file.write(0, f);
    await ctx.file.write(footerAt, f);
  }
  await sync(ctx);
}

/** Rebase: names a new parent (or none). Returns where the next block goes. */
export async function setParent(ctx: EditContext, name: string | undefined, format: string | undefined, resolvedPath: string | undefined): Promise<number> {
  const { file, layout } = ctx;
  const dyn = layout.dyn!;
  if (name === undefined) {
    if (layout.diskType !== DISK_DIFFERENCING) return ctx.nextFree;
    dyn.header = { ...dyn.header, parentUuid: ZERO_UUID, parentTimestamp: 0, parentName: '', locators: Array.from({ length: 8 }, () => ({ ...EMPTY_LOCATOR })) };
    layout.footer = { ...layout.footer, diskType: DISK_DYNAMIC };
    layout.diskType = DISK_DYNAMIC;
    await writeHeaderAndFooter(ctx, true, ctx.nextFree);
    return ctx.nextFree;
  }
  if (format !== undefined && format !== 'vpc') throw new DiskError('EUNSUPPORTED', `${file.path}: a differencing VHD's parent must be a VHD, not ${format}`, file.path);
  const dir = nodePath.dirname(nodePath.resolve(file.path));
  const facts = await parentFacts(dir, resolvedPath ?? nodePath.resolve(dir, name));
  if (facts.virtualSize < layout.virtualSize) throw new DiskError('EINVAL', `${file.path}: the new parent (${facts.virtualSize} bytes) is smaller than the image (${layout.virtualSize} bytes)`, file.path);
  const becomesDifferencing = layout.diskType !== DISK_DIFFERENCING;
  if (becomesDifferencing) await setEveryBitmap(ctx);
  let nextFree = ctx.nextFree;
  // Reusable locator spaces (the old locators'), largest first.
  const slots = dyn.header.locators.filter((l) => l.platformCode !== 0 && l.dataOffset > 0).map((l) => ({ at: l.dataOffset, space: locatorSpaceBytes(l) }));
  slots.sort((a, b) => b.space - a.space);
  const locators: ParentLocator[] = [];
  const placed: Array<{ at: number; data: Uint8Array }> = [];
  for (const [code, text] of [
    [LOCATOR_W2KU, facts.absolute],
    [LOCATOR_W2RU, relativeName(name, facts)],
  ] as const) {
    const data = encodeLocatorData(code, text);
    const space = Math.max(SECTOR, roundUp(data.length));
    const i = slots.findIndex((s) => s.space >= data.length);
    let at: number;
    let slotSpace = space;
    if (i >= 0) {
      at = slots[i].at;
      slotSpace = slots[i].space;
      slots.splice(i, 1);
    } else {
      at = nextFree;
      nextFree += space;
    }
    placed.push({ at, data: padTo(data, slotSpace) });
    locators.push({ platformCode: code, dataSpace: slotSpace, dataLength: data.length, dataOffset: at });
  }
  if (nextFree !== ctx.nextFree) {
    // New locator space past the blocks: the footer moves after it first, so the file always ends with one.
    await file.write(nextFree, serializeFooter(layout.footer));
    dyn.metaEnd = Math.max(dyn.metaEnd, nextFree);
  }
  for (const p of placed) await file.write(p.at, p.data);
  await sync(ctx);
  while (locators.length < 8) locators.push({ ...EMPTY_LOCATOR });
  dyn.header = { ...dyn.header, parentUuid: facts.uuid, parentTimestamp: facts.timestamp, parentName: facts.name, locators };
  if (becomesDifferencing) {
    layout.footer = { ...layout.footer, diskType: DISK_DIFFERENCING };
    layout.diskType = DISK_DIFFERENCING;
  }
  await writeHeaderAndFooter(ctx, becomesDifferencing, nextFree);
  return nextFree;
}

function padTo(data: Uint8Array, n: number): Uint8Array {
  const out = new Uint8Array(Math.max(n, data.length));
  out.set(data);
  return out;
}

/** Every allocated block's bitmap all ones (what a dynamic image means by an allocated block), synced. */
async function setEveryBitmap(ctx: EditContext): Promise<void> {
  const dyn = ctx.layout.dyn!;
  const ones = new Uint8Array(dyn.bitmapSize).fill(0xff);
  for (const e of dyn.bat) {
    if (e === BAT_UNUSED) continue;
    const bm = await ctx.file.readBlock(e * SECTOR, dyn.bitmapSize, 'VHD sector bitmap');
    if (!bm.every((b) => b === 0xff)) await ctx.file.write(e * SECTOR, ones);
  }
  await sync(ctx);
}

/**
 * Commit: every BAT entry unused (a crash part way leaves some blocks allocated, holding what the parent now
 * holds: both read alike), synced; then the file is cut after the metadata with the footer there, and the header
 * records the parent's new modification time. Returns where the next block goes.
 */
export async function emptyBat(ctx: EditContext, parentPath: string | undefined): Promise<number> {
  const { file, layout } = ctx;
  const dyn = layout.dyn!;
  dyn.bat.fill(BAT_UNUSED);
  const bytes = dyn.bat.length * 4;
  const chunk = new Uint8Array(Math.min(bytes, 1 << 20)).fill(0xff);
  for (let at = 0; at < bytes; at += chunk.length) await file.write(dyn.batOffset + at, chunk.subarray(0, Math.min(chunk.length, bytes - at)));
  await sync(ctx);
  const end = roundUp(Math.max(dyn.metaEnd, Math.ceil((dyn.batOffset + bytes) / SECTOR) * SECTOR));
  dyn.dataEnd = end;
  if (end < ctx.nextFree) {
    await file.write(end, serializeFooter(layout.footer));
    await sync(ctx);
    await file.truncate(end + FOOTER_SIZE);
  }
  if (parentPath !== undefined) {
    const facts = await parentFacts(nodePath.dirname(nodePath.resolve(file.path)), parentPath);
    dyn.header = { ...dyn.header, parentTimestamp: facts.timestamp };
    await writeHeaderAndFooter(ctx, false, end);
  }
  return Math.min(end, ctx.nextFree);
}
