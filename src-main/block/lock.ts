/**
 * Image locks that qemu respects, and that make us respect qemu's: open-file-description byte-range locks on
 * the bytes qemu's file-posix driver uses. A holder of permission bit i keeps a shared lock on byte 100 + i;
 * one that does not let others have permission i keeps a shared lock on byte 200 + i. Before a permission is
 * taken, byte 200 + i must be free of others' locks; before a permission is denied to others, byte 100 + i must.
 * Locks are taken first and tested after, as qemu does, so two openers racing cannot both pass.
 *
 * One lock file description per image (by device and inode) serves every open of it in this process, holding
 * the union of their permissions: our own readers and writers never refuse each other, and coordinating them
 * is the services' business. Without the native helper there are no locks, and `lockingAvailable` says so.
 */
import { constants as fsc } from 'node:fs';
import { DiskError } from './errors';
import { nativeFileOps } from './native';
import { describeLockHolders } from './lock-holder';
import { openFile, statPath, type OpenFile } from './open-file';

const PERM_BASE = 100;
const SHARED_BASE = 200;
/** qemu's BLK_PERM_* bits. */
const CONSISTENT_READ = 0x01;
const WRITE = 0x02;
const WRITE_UNCHANGED = 0x04;
const RESIZE = 0x08;
const ALL = 0x0f;

/**
 * 'read': see a consistent image, and let nobody write it meanwhile (qemu-img info does the same).
 * 'write': read, write and resize, letting others only read (as qemu-img's writing commands and a VM's disk).
 * 'share': read without excluding anyone (-U / --force-share): what is read may be inconsistent.
 */
export type LockAccess = 'read' | 'write' | 'share';

const PERMS: Record<LockAccess, { perm: number; unshared: number }> = {
  read: { perm: CONSISTENT_READ, unshared: WRITE },
  write: { perm: CONSISTENT_READ | WRITE | WRITE_UNCHANGED | RESIZE, unshared: ALL & ~(CONSISTENT_READ | WRITE_UNCHANGED) },
  share: { perm: CONSISTENT_READ, unshared: 0 },
};

/** True when images are locked on this system (the native helper was built). */
export function lockingAvailable(): boolean {
  return nativeFileOps !== undefined;
}

let forceShare = false;
/** -U / --force-share for this process: reads take no exclusion at all (the CLI sets it; the app never does). */
export function setForceShare(on: boolean): void {
  forceShare = on;
}

/**
 * Images the app's user chose to read while another program writes them ("Open read-only anyway"): reads of
 * these take no exclusion, as -U does for the CLI; writing them is refused as before. Kept for the launch.
 */
const sharedReads = new Set<string>();
export function shareReadsOf(dev: number, ino: number): void {
  sharedReads.add(`${dev}:${ino}`);
}

interface Holder {
  fh: OpenFile;
  users: Map<number, LockAccess>;
  perm: number;
  unshared: number;
}

const holders = new Map<string, Holder>();
let nextUser = 1;

function bits(mask: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < 4; i++) if (mask & (1 << i)) out.push(i);
  return out;
}

function union(users: Map<number, LockAccess>): { perm: number; unshared: number } {
  let perm = 0;
  let unshared = 0;
  for (const a of users.values()) {
    perm |= PERMS[a].perm;
    unshared |= PERMS[a].unshared;
  }
  return { perm, unshared };
}

/** Sets the lock bytes of `h` to exactly `want`: new ones taken, ones no longer needed released. */
function apply(h: Holder, want: { perm: number; unshared: number }): void {
  const ops = nativeFileOps!;
  for (const i of bits(ALL)) {
    const permNow = (h.perm >> i) & 1;
    const permWant = (want.perm >> i) & 1;
    if (permNow !== permWant) ops.lockBytes(h.fh.fd, PERM_BASE + i, 1, permWant ? 1 : 0);
    const unNow = (h.unshared >> i) & 1;
    const unWant = (want.unshared >> i) & 1;
    if (unNow !== unWant) ops.lockBytes(h.fh.fd, SHARED_BASE + i, 1, unWant ? 1 : 0);
  }
  h.perm = want.perm;
  h.unshared = want.unshared;
}

/** The first byte another process's locks make us unable to take `want`, or undefined. */
function conflict(h: Holder, want: { perm: number; unshared: number }): 'write' | 'read' | undefined {
  const ops = nativeFileOps!;
  for (const i of bits(want.perm)) if (ops.testBytes(h.fh.fd, SHARED_BASE + i, 1) === 1) return (1 << i) === CONSISTENT_READ ? 'read' : 'write';
  for (const i of bits(want.unshared)) if (ops.testBytes(h.fh.fd, PERM_BASE + i, 1) === 1) return 'write';
  return undefined;
}

export interface ImageLock {
  release(): Promise<void>;
}

const NO_LOCK: ImageLock = { release: async () => undefined };

/**
 * Locks the image at `path` (identified by `dev`/`ino`, from the caller's stat of its open file) for `access`.
 * Refuses with EBUSY, in words, when another program holds it in a way that excludes this access.
 */
export async function lockImage(path: string, dev: number, ino: number, access: LockAccess): Promise<ImageLock> {
  if (!nativeFileOps) return NO_LOCK;
  const wanted: LockAccess = access === 'read' && (forceShare || sharedReads.has(`${dev}:${ino}`)) ? 'share' : access;
  const key = `${dev}:${ino}`;
  let h = holders.get(key);
  if (!h) {
    // Its own read-only description: the locks live as long as it does, whatever the image's users do.
    const fh = await openFile(path, fsc.O_RDONLY);
    // Another open of the same image may have made the holder while this one waited for its file: there must
    // be only one, or this process's second description would hold locks that refuse its own writers.
    h = holders.get(key);
    if (h) await fh.close();
    else {
      h = { fh, users: new Map(), perm: 0, unshared: 0 };
      holders.set(key, h);
    }
  }
  const user = nextUser++;
  h.users.set(user, wanted);
  const want = union(h.users);
  const before = { perm: h.perm, unshared: h.unshared };
  apply(h, want);
  const clash = conflict(h, want);
  if (clash) {
    h.users.delete(user);
    apply(h, before);
    await dropIfUnused(key, h);
    const holder = describeLockHolders(dev, ino);
    throw new DiskError(
      'EBUSY',
      wanted === 'write'
        ? `${path}: the image is in use by ${holder}; close it there first`
        : `${path}: the image is being written by ${holder}; reading it now could show a half-written state (give -U to read it anyway)`,
      path,
    );
  }
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      const cur = holders.get(key);
      if (cur !== h || !h.users.delete(user)) return;
      apply(h, union(h.users));
      await dropIfUnused(key, h);
    },
  };
}

async function dropIfUnused(key: string, h: Holder): Promise<void> {
  if (h.users.size > 0) return;
  holders.delete(key);
  await h.fh.close().catch(() => undefined);
}

/** True when another open file description holds a writer's lock on the file open as `fd` (a live writer). */
export function isLockedByOthers(fd: number): boolean {
  return nativeFileOps !== undefined && nativeFileOps.testBytes(fd, PERM_BASE + 1, 1) === 1;
}

/**
 * True when another program holds the image so that opening it for writing would be refused (lockImage's
 * 'write' would fail with EBUSY), found without taking any lock: a probe that takes the write lock, even for a
 * moment, would make a VM or qemu-img starting at that moment fail. This process's own locks do not count (they
 * never refuse each other), so the test goes through this process's lock description when it has one.
 */
export async function heldAgainstWriting(path: string): Promise<boolean> {
  if (!nativeFileOps) return false;
  const fh = await openFile(path, fsc.O_RDONLY);
  try {
    const st = await fh.stat();
    const h = holders.get(`${st.dev}:${st.ino}`);
    return conflict(h ?? { fh, users: new Map(), perm: 0, unshared: 0 }, PERMS.write) !== undefined;
  } finally {
    await fh.close();
  }
}

/** Who holds the image, in words for a message: a program named from /proc where Linux can tell, else "another program". */
export async function lockHolderOf(path: string): Promise<string> {
  const st = await statPath(path);
  return describeLockHolders(st.dev, st.ino);
}
