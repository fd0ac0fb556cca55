/**
 * A write-protected image (chattr +i: the kernel refuses every write, rename and link, even to root): Check &
 * Repair still checks it (reading is allowed), the failed repair says that writing, not reading, is refused, and
 * offers to save the repaired image as a new file. qemu-img check: the new file is clean, the image is untouched.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Qcow2Patcher } from '../interop/qcow2-check-patch';
import { must, run } from '../helpers';
import { e2eSession, test } from './browser';
import { layoutDefects } from './layout';

const session = e2eSession('dw-e2e-write-protected-');
const img = session.work.path('locked.qcow2');

const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
const chattrWorks = (() => {
  const probe = session.work.path('probe');
  must('qemu-img', ['create', '-q', '-f', 'raw', probe, '1M']);
  const ok = run('chattr', ['+i', probe]).status === 0;
  run('chattr', ['-i', probe]);
  return ok;
})();

test('a write-protected leaky qcow2: checked, "can be read but not written", repaired into a new file', { skip: !chattrWorks && 'chattr +i is not possible here' }, async () => {
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', img, '16M']);
  must('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 0 256k', img]);
  const p = new Qcow2Patcher(img);
  p.setRefcount(p.appendCluster(0x5a), 1);
  assert.equal(run('qemu-img', ['check', img]).status, 3, 'qemu-img sees a leak');
  must('chattr', ['+i', img]);
  try {
    await repairProtected();
  } finally {
    // The scratch folder cannot be removed with an immutable file in it.
    run('chattr', ['-i', img]);
  }
});

async function repairProtected(): Promise<void> {
  const before = sha(img);

  const { page } = session.browser;
  await page.goto(session.host.url);
  await page.getByLabel('Image path').fill(img);
  await page.getByRole('button', { name: 'Check & Repair' }).click();
  await page.getByRole('heading', { name: 'The image leaks space' }).waitFor();
  await page.getByRole('button', { name: 'Repair', exact: true }).click();

  const note = page.locator('.error-note');
  await note.waitFor();
  const text = await note.innerText();
  assert.match(text, /can be read but not written/);
  assert.doesNotMatch(text, /not allowed to read|permission denied/);
  const elsewhere = page.getByTestId('repair-elsewhere');
  await elsewhere.waitFor();
  const target = page.getByLabel('Save the repaired image as');
  assert.equal(await target.inputValue(), session.work.path('locked.repaired.qcow2'));
  assert.deepEqual(await layoutDefects(page), []);

  await page.getByRole('button', { name: 'Repair into a new file' }).click();
  await page.getByRole('heading', { name: 'The image is now clean' }).waitFor();
  assert.match(await page.getByTestId('repaired-into').innerText(), /locked\.repaired\.qcow2; locked\.qcow2 is as it was/);
  assert.equal(run('qemu-img', ['check', session.work.path('locked.repaired.qcow2')]).status, 0, 'the new file is clean');
  assert.equal(sha(img), before, 'the write-protected image is untouched');
}
