/**
 * Reliability against other programs and the user's Ctrl-C (issue: locks, signals, FIFOs):
 * - image locks compatible with qemu's: a qemu-io holding an image makes our writes (and plain reads) refuse
 *   with a plain line, -U reads it anyway; an image we hold makes qemu-img/qemu-io refuse it; readers coexist;
 * - SIGINT and SIGTERM during a convert cancel it: exit 130/143, one line, no temporary file and no target;
 * - a temporary file left by a killed convert is removed by the next convert to the same target;
 * - a FIFO as the image or as its backing file is refused at once instead of hanging.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { ImageFile } from '../../src-main/block/file';
import { lockingAvailable } from '../../src-main/block/lock';
import { CLI, dw, must, run, scratch } from '../helpers';

const work = scratch('dw-locks-');
after(work.cleanup);

/** qemu-io with the image open and waiting for commands on stdin, until stopped. */
async function holdWithQemuIo(image: string, format: string): Promise<ChildProcess> {
  const child = spawn('qemu-io', ['-f', format, image], { stdio: ['pipe', 'pipe', 'pipe'] });
  // Its prompt shows once the image is open (and locked).
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('qemu-io did not open the image')), 10_000);
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('qemu-io>')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', () => reject(new Error('qemu-io exited')));
  });
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  const done = new Promise((r) => child.once('exit', r));
  child.stdin!.end('quit\n');
  await done;
}

test('the native helper that takes the locks is built here (locking is not silently off)', () => {
  assert.equal(lockingAvailable(), true);
});

test('an image qemu-io has open: our write is refused in plain words, the image is unchanged; -U reads it', async () => {
  const img = work.path('held.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '16M']);
  writeFileSync(work.path('data.bin'), Buffer.alloc(4096, 0x5a));
  const child = await holdWithQemuIo(img, 'qcow2');
  try {
    const w = dw(['write', img, '0', work.path('data.bin')]);
    assert.equal(w.status, 1);
    // The holder is named from /proc (qemu-io, its pid and command line).
    assert.match(w.stderr, new RegExp(`^diskwright: .*held\\.qcow2: the image is (in use|being written) by qemu-io \\(pid ${child.pid}: qemu-io `));
    assert.doesNotMatch(w.stderr, /at \w+ \(|Error:/);
    const info = dw(['info', img]);
    assert.equal(info.status, 1, 'a plain read of an image being written is refused as qemu-img info refuses it');
    assert.equal(run('qemu-img', ['info', img]).status, 1, 'qemu-img agrees');
    const shared = dw(['info', '-U', img]);
    assert.equal(shared.status, 0, shared.stderr);
    assert.match(shared.stdout, /file format: qcow2/);
    assert.equal(dw(['map', '--force-share', img]).status, 0);
  } finally {
    await stop(child);
  }
  // Nothing was written while it was held.
  assert.equal(run('qemu-img', ['compare', '-f', 'qcow2', img, '-F', 'raw', work.path('data.bin')]).status, 1);
  assert.equal(dw(['write', img, '0', work.path('data.bin')]).status, 0, 'once qemu-io is gone the write goes through');
});

test('an image we are writing: qemu-img and qemu-io refuse it; an image we are reading: qemu-img reads it too, qemu-io cannot write it', async () => {
  const img = work.path('ours.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '16M']);
  const writer = await ImageFile.open(img, true);
  try {
    const info = run('qemu-img', ['info', img]);
    assert.equal(info.status, 1);
    assert.match(info.stderr, /Failed to get shared "write" lock/);
    assert.match(run('qemu-io', ['-c', 'write 0 512', img]).stderr, /Failed to get "write" lock/);
    assert.equal(run('qemu-img', ['info', '-U', img]).status, 0);
  } finally {
    await writer.close();
  }
  const reader = await ImageFile.open(img, false);
  try {
    assert.equal(run('qemu-img', ['info', img]).status, 0, 'readers never refuse readers');
    assert.equal(dw(['info', img]).status, 0);
    assert.match(run('qemu-io', ['-c', 'write 0 512', img]).stderr, /Failed to get "write" lock/);
  } finally {
    await reader.close();
  }
  assert.equal(run('qemu-io', ['-c', 'write 0 512', img]).status, 0, 'closing released every lock');
});

test('our own readers and writers of one image in one process do not refuse each other', async () => {
  const img = work.path('self.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '16M']);
  const w = await ImageFile.open(img, true);
  const r = await ImageFile.open(img, false);
  await r.close();
  assert.match(run('qemu-img', ['info', img]).stderr, /Failed to get shared "write" lock/, 'the writer still holds its lock');
  await w.close();
  assert.equal(run('qemu-img', ['info', img]).status, 0);
});

/** A raw source big enough that a convert is still running when the signal comes. */
function bigSource(path: string, mib: number): void {
  const buf = Buffer.alloc(mib << 20);
  for (let i = 0; i < buf.length; i += 512) buf[i] = (i >> 9) & 0xff || 1;
  writeFileSync(path, buf);
}

for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  test(`${signal} during a convert cancels it: exit ${code}, one line, no target and no temporary file`, async () => {
    const s = scratch('dw-sig-');
    try {
      const src = s.path('src.raw');
      bigSource(src, 384);
      const child = spawn(process.execPath, [CLI, 'convert', '-p', '-O', 'qcow2', src, s.path('out.qcow2')], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      const started = new Promise<void>((resolve) => {
        child.stderr.on('data', (d: Buffer) => {
          stderr += d.toString();
          if (/\((?:[1-9]\d?)\.00\/100%\)/.test(stderr)) resolve();
        });
      });
      const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
      await Promise.race([started, exited]);
      child.kill(signal);
      const status = await exited;
      assert.equal(status, code, stderr);
      assert.match(stderr, /diskwright: cancelled/);
      assert.deepEqual(readdirSync(s.dir), ['src.raw'], 'neither the target nor a temporary file is left');
    } finally {
      s.cleanup();
    }
  });
}

test('a temporary file left by a killed convert is removed by the next convert to the same target', () => {
  const src = work.path('small.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', src, '4M']);
  const stale = work.path('.next.qcow2.diskwright-0123abcd.tmp');
  writeFileSync(stale, Buffer.alloc(65536, 1));
  const r = dw(['convert', '-O', 'qcow2', src, work.path('next.qcow2')]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /removed .*\.next\.qcow2\.diskwright-0123abcd\.tmp, left by an earlier convert that was stopped/);
  assert.ok(!readdirSync(work.dir).includes('.next.qcow2.diskwright-0123abcd.tmp'));
});

test('a FIFO as the image, or as its backing file, is refused at once instead of hanging', () => {
  const fifo = work.path('pipe');
  must('mkfifo', [fifo]);
  for (const args of [
    ['info', fifo],
    ['map', fifo],
    ['convert', '-O', 'raw', fifo, work.path('from-fifo.raw')],
    ['check', fifo],
  ]) {
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 15_000 });
    assert.notEqual(r.signal, 'SIGTERM', `${args[0]} hung on a FIFO`);
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /pipe: not a regular file or a block device/);
  }
  const overlay = work.path('over-fifo.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-b', fifo, '-F', 'raw', overlay, '16M']);
  for (const args of [['info', '--backing-chain', overlay], ['convert', '-O', 'raw', overlay, work.path('x.raw')]]) {
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 15_000 });
    assert.notEqual(r.signal, 'SIGTERM', `${args[0]} hung on a FIFO backing file`);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /not a regular file or a block device/);
  }
});
