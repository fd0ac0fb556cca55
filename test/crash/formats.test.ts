/**
 * The other formats' writers (`diskwright write`) stopped at every I/O step (harness.ts), each judged by its
 * format's own recovery and an outside reader: VHDX, Parallels and VMDK by qemu-img (`check -r all` replays
 * a VHDX log and clears Parallels' in-use mark, as qemu does when it opens them; then check must be clean),
 * UML COW by uml_moo's merge with the backing file. After recovery every sector holds its old or new content.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe as suite, test } from 'node:test';
import { must, run, scratch } from '../helpers';
import { assertOldOrNew, crashEveryStep, describe, guestBytes, qemuCheck } from './harness';

const s = scratch('dw-crash-formats-');
after(() => s.cleanup());

const SIZE = 4 * 1024 * 1024;
const WRITES = ['write -P 0x11 0 192k', 'write -P 0x22 1M 64k', 'write -P 0x33 3M 100k'];

function payload(): string {
  const p = s.path('payload.bin');
  writeFileSync(p, Buffer.alloc(1536 * 1024 + 512, 0x77));
  return p;
}

/** A qemu-readable image after a stop: recovered the format's way, then clean, and old or new per sector. */
function qemuVerifier(name: string, format: string, old: Buffer) {
  let fin: Buffer | undefined;
  return (dir: string, completed: boolean) => {
    const p = join(dir, name);
    let c = qemuCheck(p, format);
    if (c.corruptions !== 0 || c.checkErrors !== 0) {
      run('qemu-img', ['check', '-q', '-r', 'all', '-f', format, p]);
      c = qemuCheck(p, format);
    }
    if (c.corruptions !== 0 || c.checkErrors !== 0) assert.fail(`qemu-img check after its repair: ${c.corruptions} corruptions, ${c.checkErrors} check errors: ${c.text.trim()}`);
    const now = guestBytes(p, format, dir);
    if (completed) fin = now;
    assertOldOrNew(now, old, fin!, `${format} content`);
  };
}

function qemuFormatCase(name: string, format: string, createOpts: string[]) {
  const tpl = s.path(`template-${name}`);
  must('qemu-img', ['create', '-q', '-f', format, ...createOpts, tpl, String(SIZE)]);
  must('qemu-io', ['-f', format, ...WRITES.flatMap((w) => ['-c', w]), tpl]);
  const old = guestBytes(tpl, format, s.dir);
  return crashEveryStep(s.dir, { image: name, format, args: ['write', '-f', format, name, '960k', payload()], verify: qemuVerifier(name, format, old) });
}

function expectRecoverable(r: ReturnType<typeof qemuFormatCase>): void {
  assert.equal(r.failures.length, 0, `${r.failures.length} of ${r.tried} stops (of ${r.steps} steps) left an image its format cannot recover:\n${describe(r.failures)}`);
}

suite('other formats: a crash at any step of a write is recovered by the format', () => {
  test('VHDX (dynamic): the log replays', () => expectRecoverable(qemuFormatCase('a.vhdx', 'vhdx', ['-o', 'subformat=dynamic'])));
  test('Parallels: the in-use mark', () => expectRecoverable(qemuFormatCase('a.hdd', 'parallels', [])));
  test('VMDK monolithicSparse', () => expectRecoverable(qemuFormatCase('a.vmdk', 'vmdk', ['-o', 'subformat=monolithicSparse'])));

  suite('UML COW', () => {
    let oldMerged: Buffer;
    before(() => {
      const back = s.path('backing.raw');
      const b = Buffer.alloc(SIZE);
      for (let i = 0; i < SIZE; i += 4096) b.fill((i / 4096) & 0xff, i, i + 2048);
      writeFileSync(back, b);
      must('uml_mkcow', [s.path('template-a.cow'), back]);
      // uml_mkcow leaves the bitmap empty: before the write, the merge is the backing file itself.
      oldMerged = b;
    });
    test('the bitmap and the data: every sector old or new under uml_moo', () => {
      let fin: Buffer | undefined;
      const r = crashEveryStep(s.dir, {
        image: 'a.cow',
        format: 'cow',
        args: ['write', 'a.cow', '960k', payload()],
        verify: (dir, completed) => {
          const out = join(dir, 'merged.raw');
          rmSync(out, { force: true });
          const m = run('uml_moo', [join(dir, 'a.cow'), out]);
          assert.equal(m.status, 0, `uml_moo failed: ${m.stderr}${m.stdout}`);
          const now = readFileSync(out);
          if (completed) fin = now;
          assertOldOrNew(now, oldMerged, fin!, 'COW merged by uml_moo');
        },
      });
      expectRecoverable(r);
    });
  });
});

