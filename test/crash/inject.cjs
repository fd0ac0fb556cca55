// The crash injector, preloaded (node --require) into a writer run by test/crash/harness.ts. It wraps the
// fs.promises FileHandle calls that change a file (write, writev, truncate, sync, datasync), their blocking
// counterparts on descriptors from fs.openSync (writeSync, ftruncateSync, fsyncSync, fdatasyncSync: the command
// line's block/open-file.ts) and fs.promises.rename, counting them as steps. Environment:
//   DW_CRASH_COUNT=FILE  write the number of steps taken to FILE at exit (the counting run)
//   DW_CRASH_AT=N        stop before step N (1-based): steps 1..N-1 happened, N and later never do
//   DW_CRASH_MODE=kill   the process dies at once: everything written so far stays (the OS keeps it)
//   DW_CRASH_MODE=cut    a power cut: in addition, every write since the last completed sync of its file
//                        is undone (the worst case of a cache that lost all unsynced writes; a rename is
//                        treated as durable once made, as on a journalled file system)
//   DW_CRASH_MODE=reorder a power cut where the disk cache kept some unsynced writes and lost others (each
//                        independently, seeded by N): the writes since the last sync may land in any order
'use strict';
/* eslint-disable @typescript-eslint/no-require-imports */
const fs = require('node:fs');
/** The real writeSync: the injector's own writes (undo) go through it; the one patched below counts steps. */
const rawWriteSync = fs.writeSync;
const rawFtruncateSync = fs.ftruncateSync;
const rawOpenSync = fs.openSync;

const at = Number(process.env.DW_CRASH_AT || 0);
const mode = process.env.DW_CRASH_MODE || 'kill';
const countFile = process.env.DW_CRASH_COUNT;
let steps = 0;
/** Per fd: undo records of the writes since its last completed sync, oldest first. */
const unsynced = new Map();

function undoRecord(fd, position, length, data) {
  let size = 0;
  try {
    size = fs.fstatSync(fd).size;
  } catch {
    return;
  }
  const keep = Math.max(0, Math.min(length, size - position));
  const old = Buffer.alloc(keep);
  if (keep > 0) fs.readSync(fd, old, 0, keep, position);
  const list = unsynced.get(fd) || [];
  list.push({ position, old, size, data });
  unsynced.set(fd, list);
}

/** mulberry32, seeded by the step: which unsynced writes a reordering cache kept. */
function kept() {
  let a = (at * 2654435761) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296 < 0.5;
  };
}
const keep = kept();

function powerCut() {
  for (const { path, list } of pending) {
    try {
      undo(rawOpenSync(path, 'r+'), list);
    } catch {
      // removed or renamed away since: nothing of it is left to undo
    }
  }
  for (const [fd, list] of unsynced) undo(fd, list);
}

function undo(fd, list) {
  for (let i = list.length - 1; i >= 0; i--) {
    const r = list[i];
    try {
      if (r.old.length) rawWriteSync(fd, r.old, 0, r.old.length, r.position);
      if (r.truncatedTail) rawWriteSync(fd, r.truncatedTail, 0, r.truncatedTail.length, r.position);
      rawFtruncateSync(fd, r.size);
    } catch {
      // a closed descriptor: its writes were synced at close or are gone with it
    }
  }
  if (mode !== 'reorder') return;
  // Then the writes the cache happened to keep land again, in their order.
  for (const r of list) {
    if (!keep()) continue;
    try {
      if (r.data) rawWriteSync(fd, r.data, 0, r.data.length, r.position);
      else if (r.truncateTo !== undefined) rawFtruncateSync(fd, r.truncateTo);
    } catch {
      // as above
    }
  }
}

function step() {
  steps++;
  if (at && steps >= at) {
    if (mode === 'cut' || mode === 'reorder') powerCut();
    process.kill(process.pid, 'SIGKILL');
    // SIGKILL is delivered at once; never continue past this point.
    for (;;);
  }
}

process.on('exit', () => {
  if (countFile) fs.writeFileSync(countFile, String(steps));
});

function patch(proto) {
  if (proto.__dwCrashPatched) return;
  proto.__dwCrashPatched = true;
  const { write, writev, truncate, sync, datasync, close } = proto;
  proto.write = function (buffer, offset, length, position) {
    step();
    if (typeof buffer !== 'string' && typeof position === 'number') {
      const len = typeof length === 'number' ? length : buffer.byteLength - (offset || 0);
      const view = ArrayBuffer.isView(buffer) ? Buffer.from(buffer.buffer, buffer.byteOffset, buffer.byteLength) : Buffer.from(buffer);
      undoRecord(this.fd, position, len, Buffer.from(view.subarray(offset || 0, (offset || 0) + len)));
    }
    return write.apply(this, arguments);
  };
  proto.writev = function (buffers, position) {
    step();
    if (typeof position === 'number') {
      const data = Buffer.concat(buffers.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)));
      undoRecord(this.fd, position, data.length, data);
    }
    return writev.apply(this, arguments);
  };
  proto.truncate = function (len) {
    truncateStep(this.fd, len);
    return truncate.apply(this, arguments);
  };
  const synced = function (orig) {
    return async function () {
      step();
      const fd = this.fd;
      // Only the writes made before the sync began are durable when it returns.
      const before = (unsynced.get(fd) || []).length;
      const r = await orig.apply(this, arguments);
      const list = unsynced.get(fd);
      if (list) list.splice(0, before);
      return r;
    };
  };
  proto.sync = synced(sync);
  proto.datasync = synced(datasync);
  proto.close = function () {
    closing(this.fd);
    return close.apply(this, arguments);
  };
}

/** A truncation is a step; its undo record keeps the tail it cuts off. */
function truncateStep(fd, len) {
  step();
  let size = 0;
  try {
    size = fs.fstatSync(fd).size;
  } catch {}
  const to = len || 0;
  const tail = to < size ? Buffer.alloc(size - to) : undefined;
  if (tail) fs.readSync(fd, tail, 0, tail.length, to);
  const list = unsynced.get(fd) || [];
  list.push({ position: to, old: Buffer.alloc(0), size, truncatedTail: tail, truncateTo: to });
  unsynced.set(fd, list);
}

/**
 * A descriptor closed without a sync keeps its unsynced writes at risk; the file stays open in the model only
 * by its records, which the power cut replays through a fresh descriptor.
 */
function closing(fd) {
  const list = unsynced.get(fd);
  if (list && list.length) {
    const path = fdPaths.get(fd);
    if (path) pending.push({ path, list });
  }
  unsynced.delete(fd);
  fdPaths.delete(fd);
}

/** Paths of descriptors we opened, so a power cut can undo unsynced writes of files closed since. */
const fdPaths = new Map();
const pending = [];
const origOpen = fs.promises.open;
fs.promises.open = async function (path) {
  const fh = await origOpen.apply(this, arguments);
  patch(Object.getPrototypeOf(fh));
  if (typeof path === 'string') fdPaths.set(fh.fd, path);
  return fh;
};
// The command line writes images with blocking pwrite (block/file.ts useBlockingIo): a write to a descriptor
// opened above is a step as a FileHandle write is.
fs.writeSync = function (fd, buffer, offset, length, position) {
  if (fdPaths.has(fd) && typeof buffer !== 'string' && typeof position === 'number') {
    step();
    const len = typeof length === 'number' ? length : buffer.byteLength - (offset || 0);
    const view = Buffer.from(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    undoRecord(fd, position, len, Buffer.from(view.subarray(offset || 0, (offset || 0) + len)));
  }
  return rawWriteSync.apply(this, arguments);
};
// Descriptors opened with blocking calls (block/open-file.ts under the command line's blocking I/O).
fs.openSync = function (path) {
  const fd = rawOpenSync.apply(this, arguments);
  if (typeof path === 'string') fdPaths.set(fd, path);
  return fd;
};
const rawCloseSync = fs.closeSync;
fs.closeSync = function (fd) {
  closing(fd);
  return rawCloseSync.apply(this, arguments);
};
fs.ftruncateSync = function (fd, len) {
  if (fdPaths.has(fd)) truncateStep(fd, len);
  return rawFtruncateSync.apply(this, arguments);
};
for (const name of ['fsyncSync', 'fdatasyncSync']) {
  const orig = fs[name];
  fs[name] = function (fd) {
    if (!fdPaths.has(fd)) return orig.apply(this, arguments);
    step();
    const before = (unsynced.get(fd) || []).length;
    const r = orig.apply(this, arguments);
    const list = unsynced.get(fd);
    if (list) list.splice(0, before);
    return r;
  };
}
const origRename = fs.promises.rename;
fs.promises.rename = async function () {
  step();
  return origRename.apply(this, arguments);
};
