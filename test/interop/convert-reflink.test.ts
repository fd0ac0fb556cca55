/**
 * Copy offload by default where it is the same result at no cost (services/reflink.ts): a plain `convert` whose
 * source and target lie on one file system that shares blocks (btrfs, XFS with reflink=1) offloads without -C,
 * and the new image shares the source's extents (filefrag's "shared" flag); it is identical by qemu-img compare,
 * a qcow2 target is clean by qemu-img check, and its map is qemu-img convert -C's (zeros inside data copied whole:
 * proof that the offload ran). Elsewhere (the scratch folder's ext4 or tmpfs), or across two file systems, or
 * with -S, the plain copy stays: the map is qemu-img convert's own. The trial clone leaves no file behind.
 *
 * btrfs and XFS are made in loop files and mounted: that needs root. Without it (or without loop devices) the
 * reflink cases are skipped and say so; the plain-file-system cases always run.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { dwOk, must, run, scratch } from '../helpers';
import { identical, mapOf, offloadSourceRaw } from './offload-common';

const s = scratch('dw-convert-reflink-');
const mounted: string[] = [];
after(() => {
  for (const m of mounted) run('umount', [m]);
  s.cleanup();
});
let n = 0;

/** The shared source (offload-common.ts), named afresh in `dir`. */
function sourceRaw(dir: string): string {
  return offloadSourceRaw(join(dir, `src${n++}.raw`));
}

/** Bytes of `file` in extents filefrag flags as shared with another file. */
function sharedBytes(file: string): number {
  const out = must('filefrag', ['-v', '-b4096', file]).stdout;
  let bytes = 0;
  for (const line of out.split('\n')) {
    const m = /^\s*\d+:\s+\d+\.\.\s*\d+:\s+\d+\.\.\s*\d+:\s+(\d+):.*\bshared\b/.exec(line);
    if (m) bytes += Number(m[1]) * 4096;
  }
  return bytes;
}

/** Makes and mounts a file system of `kind` in a loop file; undefined (with the reason) when this machine cannot. */
function mountFs(kind: 'btrfs' | 'xfs'): { dir?: string; why?: string } {
  if (process.getuid?.() !== 0) return { why: 'mounting a loop file needs root' };
  const img = s.path(`${kind}.img`);
  const dir = s.path(`${kind}-mnt`);
  mkdirSync(dir);
  must('truncate', ['-s', '320M', img]);
  const mk = kind === 'btrfs' ? run('mkfs.btrfs', ['-q', img]) : run('mkfs.xfs', ['-q', '-m', 'reflink=1', img]);
  if (mk.status !== 0) return { why: `mkfs.${kind} failed: ${mk.stderr.trim()}` };
  const m = run('mount', ['-o', 'loop', img, dir]);
  if (m.status !== 0) return { why: `mount -o loop failed here: ${m.stderr.trim()}` };
  mounted.push(dir);
  return { dir };
}

for (const kind of ['btrfs', 'xfs'] as const) {
  const fs = mountFs(kind);
  test(`on ${kind}, a plain convert shares the source's blocks: identical, clean, mapped as qemu-img convert -C maps`, { skip: fs.why }, () => {
    const dir = fs.dir!;
    const src = sourceRaw(dir);
    for (const fmt of ['raw', 'qcow2']) {
      const ours = join(dir, `ours${n++}.${fmt}`);
      const theirs = join(dir, `theirs${n++}.${fmt}`);
      dwOk(['convert', '-f', 'raw', '-O', fmt, src, ours]);
      must('qemu-img', ['convert', '-C', '-f', 'raw', '-O', fmt, src, theirs]);
      identical(src, ours);
      if (fmt === 'qcow2') {
        const c = JSON.parse(must('qemu-img', ['check', '--output', 'json', ours]).stdout);
        assert.equal((c.corruptions ?? 0) + (c.leaks ?? 0) + (c['check-errors'] ?? 0), 0, JSON.stringify(c));
      }
      assert.deepEqual(mapOf(ours), mapOf(theirs), `${fmt}: the map of an offloaded copy`);
      // 4 MiB of the source's data lies in the target's own extents, shared: at least most of it.
      assert.ok(sharedBytes(ours) >= 3 * 1048576, `${fmt}: only ${sharedBytes(ours)} bytes shared`);
    }
    // -S asks for zero detection at a grain: no offload, qemu-img convert's plain map.
    const grained = join(dir, `s${n++}.raw`);
    const plain = join(dir, `p${n++}.raw`);
    dwOk(['convert', '-S', '4k', '-f', 'raw', '-O', 'raw', src, grained]);
    must('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', src, plain]);
    identical(src, grained);
    assert.deepEqual(mapOf(grained), mapOf(plain));
    assert.equal(sharedBytes(grained), 0);
    // The trial clone's two files are gone: only the images made here remain.
    assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('.')), []);
  });

  test(`from another file system onto ${kind}: the plain copy, as qemu-img convert`, { skip: fs.why }, () => {
    const src = sourceRaw(s.dir);
    const ours = join(fs.dir!, `x${n++}.raw`);
    const plain = join(fs.dir!, `xp${n++}.raw`);
    dwOk(['convert', '-f', 'raw', '-O', 'raw', src, ours]);
    must('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', src, plain]);
    identical(src, ours);
    assert.deepEqual(mapOf(ours), mapOf(plain));
  });
}

test('on a file system without reflinks (the scratch folder) a plain convert does not offload: qemu-img convert\'s map', () => {
  const src = sourceRaw(s.dir);
  for (const fmt of ['raw', 'qcow2']) {
    const ours = s.path(`e${n++}.${fmt}`);
    const plain = s.path(`ep${n++}.${fmt}`);
    dwOk(['convert', '-f', 'raw', '-O', fmt, src, ours]);
    must('qemu-img', ['convert', '-f', 'raw', '-O', fmt, src, plain]);
    identical(src, ours);
    // The 64 KiB of zeros inside the data are left out, as qemu-img's plain convert leaves them.
    assert.deepEqual(mapOf(ours), mapOf(plain), fmt);
    assert.ok(mapOf(ours).some(([start, length, data]) => !data && start <= 1048576 && start + length >= 1048576 + 65536), `${fmt}: zeros inside data not written`);
  }
});
