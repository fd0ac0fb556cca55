/**
 * convert --keep-snapshots (qcow2 → qcow2): the target gets the source's internal snapshots with the same
 * content, ids, names and dates, where qemu-img convert drops them silently.
 *
 * The states are written oldest first into one new image: the first snapshot's content by the ordinary
 * convert, then a snapshot of the target taken with the source snapshot's id, name and dates; then for each
 * following state (the next snapshot, at last the image now) only the ranges where the source's tables say it
 * differs from the one before, read through that state's view. What did not change between two states is then
 * shared between the target's snapshots too, as it is in the source.
 */
import { DiskError, throwIfAborted } from '../block/errors';
import { isZeroRange } from '../block/bytes';
import { driverFor, openImage, resolveDriver } from '../registry';
import type { BlockDevice, DiffRange, SnapshotOps } from '../block/types';
import type { SnapshotInfo } from '../../src-shared/api';
import { writeAtomically } from './atomic';
import { forgetKey, keyFor, rememberKey } from '../keyring';
import { convertImage, type ConvertRequest } from './convert';

const CHUNK = 2 * 1024 * 1024;

export async function convertKeepingSnapshots(req: ConvertRequest): Promise<void> {
  const sourceDriver = await resolveDriver(req.source, req.sourceFormat);
  const targetDriver = driverFor(req.targetFormat);
  if (!sourceDriver.snapshots || !targetDriver.snapshots) {
    throw new DiskError('EUNSUPPORTED', `--keep-snapshots needs internal snapshots on both sides (qcow2 to qcow2), not ${sourceDriver.name} to ${targetDriver.name}`);
  }
  if (req.backingFile !== undefined || req.existingTarget || req.sourceSnapshot !== undefined) {
    throw new DiskError('EINVAL', '--keep-snapshots makes a new image of the whole source: it does not go with -B, -n or -l');
  }
  const srcOps = sourceDriver.snapshots;
  const dstOps = targetDriver.snapshots;
  const snapshots = await srcOps.list(req.source);
  const size = await sizeOf(req);
  for (const s of snapshots) {
    if (s['vm-state-size'] > 0) {
      throw new DiskError('EUNSUPPORTED', `${req.source}: snapshot '${s.name}' holds a saved VM state (RAM), which --keep-snapshots does not copy`, req.source);
    }
  }
  if (snapshots.length === 0) return convertImage({ ...req, keepSnapshots: false });

  // What each state after the first has to write: the ranges where it differs from the state before.
  const diffs: DiffRange[][] = [];
  for (let i = 1; i <= snapshots.length; i++) diffs.push(await srcOps.diff(req.source, snapshots[i - 1].id, snapshots[i]?.id));
  const diffBytes = diffs.flat().reduce((n, r) => n + r.length, 0);
  const total = size + diffBytes;
  let base = 0;
  const progress = (done: number) => req.onProgress?.(Math.min(total, base + done), total);

  await writeAtomically(req.target, async (work) => {
    // An encrypted target's key is held under its final name; the work is done under the temporary one.
    const key = keyFor(req.target);
    if (key) rememberKey(work, key);
    try {
      await fillTarget(work);
    } finally {
      if (key) forgetKey(work);
    }
  });
  req.onProgress?.(total, total);

  async function fillTarget(work: string): Promise<void> {
    await convertImage({ ...req, keepSnapshots: false, target: work, sourceSnapshot: snapshots[0].id, onNotice: undefined, onProgress: (d) => progress(d) });
    base += size;
    await recreate(dstOps, work, snapshots[0]);
    for (let i = 1; i <= snapshots.length; i++) {
      throwIfAborted(req.signal);
      const state = snapshots[i]; // undefined: the image now
      await copyRanges(req, work, state?.id, diffs[i - 1], (d) => progress(d));
      base += diffs[i - 1].reduce((n, r) => n + r.length, 0);
      if (state) await recreate(dstOps, work, state);
    }
  }
}

async function sizeOf(req: ConvertRequest): Promise<number> {
  const dev = await openImage(req.source, { format: req.sourceFormat, readOnly: true, backingPolicy: req.backingPolicy ?? 'anywhere' });
  const size = dev.size;
  await dev.close();
  return size;
}

/** Takes the target's snapshot with the source snapshot's name, id, dates and VM clock. */
async function recreate(ops: SnapshotOps, path: string, s: SnapshotInfo): Promise<void> {
  await ops.create(path, s.name, {
    id: s.id,
    dateSec: s['date-sec'],
    dateNsec: s['date-nsec'],
    vmClockNs: BigInt(s['vm-clock-sec']) * 1_000_000_000n + BigInt(s['vm-clock-nsec']),
    icount: s.icount,
  });
}

/** Writes into the target the source's content (at `snapshot`, or now) over `ranges`. */
async function copyRanges(req: ConvertRequest, target: string, snapshot: string | undefined, ranges: DiffRange[], onProgress: (done: number) => void): Promise<void> {
  const src = await openImage(req.source, { format: req.sourceFormat, readOnly: true, backingPolicy: req.backingPolicy ?? 'anywhere', snapshot });
  let dst: BlockDevice | undefined;
  try {
    dst = await openImage(target, { format: req.targetFormat, readOnly: false, backingPolicy: 'none' });
    if (dst.size !== src.size) {
      throw new DiskError('EUNSUPPORTED', `${req.source}: its snapshots were taken at different disk sizes, which --keep-snapshots does not reproduce`, req.source);
    }
    const buf = new Uint8Array(CHUNK);
    let done = 0;
    for (const r of ranges) {
      const end = Math.min(r.start + r.length, src.size);
      for (let pos = r.start; pos < end; ) {
        throwIfAborted(req.signal);
        const len = Math.min(CHUNK, end - pos);
        const piece = buf.subarray(0, len);
        await src.read(pos, piece);
        if (isZeroRange(piece, 0, len)) await dst.writeZeroes(pos, len);
        else await dst.write(pos, piece);
        pos += len;
        done += len;
        onProgress(done);
      }
    }
    await dst.flush();
  } finally {
    await dst?.close().catch(() => undefined);
    await src.close().catch(() => undefined);
  }
}
