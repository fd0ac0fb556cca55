/**
 * The VHD writer (`diskwright write -f vpc`) stopped at every I/O step (harness.ts; a sample of 8 per mode unless
 * DISKWRIGHT_CRASH_FULL=1): a dynamic image made by qemu (the write allocates new blocks and fills one in place)
 * and a differencing image made here over a parent. After each stop qemu still opens the dynamic image (no BAT
 * entry past the end of the file) and reads every sector old or new; our check finds no corruption (a leaked
 * block is allowed); the differencing image reads, through its parent, old or new per sector, here and in 7-Zip.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe as suite, test } from 'node:test';
import { dw, dwOk, must, run, scratch } from '../helpers';
import { assertOldOrNew, crashEveryStep, describe, guestBytes } from './harness';

const s = scratch('dw-crash-vpc-');
after(() => s.cleanup());

function payload(): string {
  const p = s.path('payload.bin');
  const b = Buffer.alloc(1536 * 1024 + 512);
  for (let i = 0; i < b.length; i++) b[i] = (i * 7 + 3) & 0xff;
  writeFileSync(p, b);
  return p;
}

/** Our check of the image after a stop: no corruption, no check error (leaks are allowed). */
function assertOurCheckClean(path: string): void {
  const r = dw(['check', '-f', 'vpc', '--output', 'json', path]);
  let j: Record<string, number> = {};
  try {
    j = JSON.parse(r.stdout) as Record<string, number>;
  } catch {
    assert.fail(`diskwright check exited ${r.status}: ${r.stderr}${r.stdout}`);
  }
  if ((j.corruptions ?? 0) !== 0 || (j['check-errors'] ?? 0) !== 0) assert.fail(`diskwright check: ${j.corruptions} corruptions, ${j['check-errors']} check errors: ${r.stdout}`);
}

function ourBytes(path: string, dir: string): Buffer {
  const out = join(dir, '.ours.raw');
  dwOk(['convert', '-f', 'vpc', '-O', 'raw', path, out]);
  const b = readFileSync(out);
  rmSync(out);
  return b;
}

suite('vpc: a crash at any step of a write leaves an image that reads each sector old or new', () => {
  test('dynamic (made by qemu): qemu opens it and reads old or new; our check finds no corruption', () => {
    const tpl = s.path('template-a.vhd');
    must('qemu-img', ['create', '-q', '-f', 'vpc', tpl, '6M']);
    must('qemu-io', ['-f', 'vpc', '-c', 'write -P 0x11 0 192k', '-c', 'write -P 0x33 4M 100k', tpl]);
    const old = guestBytes(tpl, 'vpc', s.dir);
    let fin: Buffer | undefined;
    const r = crashEveryStep(s.dir, {
      image: 'a.vhd',
      format: 'vpc',
      args: ['write', '-f', 'vpc', 'a.vhd', '960k', payload()],
      verify: (dir, completed) => {
        const p = join(dir, 'a.vhd');
        const now = guestBytes(p, 'vpc', dir); // qemu-img opens it: no block past the end of the file
        if (completed) fin = now;
        assertOldOrNew(now, old, fin!, 'vpc content (qemu-img)');
        assertOldOrNew(ourBytes(p, dir), old, fin!, 'vpc content (ours)');
        assertOurCheckClean(p);
      },
    });
    assert.equal(r.failures.length, 0, `${r.failures.length} of ${r.tried} stops (of ${r.steps} steps) failed:\n${describe(r.failures)}`);
  });

  test('differencing (made here): through its parent, old or new per sector, here and in 7-Zip', () => {
    must('qemu-img', ['create', '-q', '-f', 'vpc', s.path('base.vhd'), '6M']);
    must('qemu-io', ['-f', 'vpc', '-c', 'write -P 0x44 0 6M', s.path('base.vhd')]);
    dwOk(['create', '-q', '-f', 'vpc', '-b', 'base.vhd', '-F', 'vpc', s.path('template-c.vhd')]);
    writeFileSync(s.path('small.bin'), Buffer.alloc(3000, 0x66));
    dwOk(['write', '-f', 'vpc', s.path('template-c.vhd'), '1000', s.path('small.bin')]);
    const old = ourBytes(s.path('template-c.vhd'), s.dir);
    let fin: Buffer | undefined;
    const r = crashEveryStep(s.dir, {
      image: 'c.vhd',
      format: 'vpc',
      args: ['write', '-f', 'vpc', 'c.vhd', '960k', payload()],
      verify: (dir, completed) => {
        const p = join(dir, 'c.vhd');
        const now = ourBytes(p, dir);
        if (completed) fin = now;
        assertOldOrNew(now, old, fin!, 'differencing content (ours)');
        const z = run('7zz', ['e', '-so', '-tvhd', p]);
        assert.equal(z.status, 0, `7zz: ${z.stderr}`);
        assertOldOrNew(Buffer.concat([z.stdoutBytes, Buffer.alloc(Math.max(0, now.length - z.stdoutBytes.length))]), old, fin!, 'differencing content (7-Zip)');
        assertOurCheckClean(p);
      },
    });
    assert.equal(r.failures.length, 0, `${r.failures.length} of ${r.tried} stops (of ${r.steps} steps) failed:\n${describe(r.failures)}`);
  });
});
