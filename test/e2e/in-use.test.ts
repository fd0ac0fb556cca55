/**
 * An image another program is writing (qemu-io holding it open, with qemu's locks): the app says so in its own
 * words (no "-U"), names the program (its pid and command line, found from /proc), and offers "Open read-only
 * anyway", which opens it with a note that what is shown may change. qemu-img info without -U agrees the image is
 * locked.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { statSync } from 'node:fs';
import { after } from 'node:test';
import { lockHolders } from '../../src-main/block/lock-holder';
import { lockingAvailable } from '../../src-main/block/lock';
import { must, run } from '../helpers';
import { e2eSession, test } from './browser';
import { layoutDefects } from './layout';

const session = e2eSession('dw-e2e-in-use-');
let holder: ChildProcess | undefined;
after(() => {
  holder?.stdin?.end();
  holder?.kill();
});

async function until(what: string, ok: () => boolean): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (ok()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('an image held by qemu-io: the program is named, no -U, and Open read-only anyway opens it', { skip: !lockingAvailable() && 'no native helper: no locks' }, async () => {
  const img = session.work.path('busy.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '16M']);
  holder = spawn('qemu-io', ['-f', 'qcow2', img], { stdio: ['pipe', 'ignore', 'ignore'] });
  await until('qemu-io to lock the image', () => run('qemu-img', ['info', img]).status !== 0);
  assert.match(run('qemu-img', ['info', img]).stderr, /lock/i, 'qemu-img sees the lock too');

  const st = statSync(img);
  assert.deepEqual(lockHolders(st.dev, st.ino).map((h) => h.pid), [holder.pid], 'the holder found from /proc is qemu-io');

  const { page } = session.browser;
  await page.goto(session.host.url);
  await page.getByLabel('Image path').fill(img);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  const note = page.locator('#open-error');
  await note.waitFor();
  const text = await note.innerText();
  assert.match(text, new RegExp(`being written by qemu-io \\(pid ${holder.pid}: qemu-io -f qcow2 `));
  assert.doesNotMatch(text, /-U\b|force-share/);
  assert.deepEqual(await layoutDefects(page), []);

  await page.getByRole('button', { name: 'Open read-only anyway' }).click();
  await page.getByRole('heading', { name: 'busy.qcow2', level: 1 }).waitFor();
  await page.getByTestId('in-use-banner').waitFor();
  await page.getByRole('img', { name: /^Allocation map:/ }).waitFor();
  // The image was only read: qemu-io still holds it, and it is still a clean qcow2 once qemu-io lets go.
  holder.stdin!.end();
  await until('qemu-io to exit', () => holder!.exitCode !== null);
  assert.equal(run('qemu-img', ['check', img]).status, 0);
});
