/**
 * Exporting one snapshot of a multi-snapshot qcow2 through the Convert wizard (issue 25 item 8): the verify is
 * offered and on, it compares the copy with the snapshot (not with the image as it is now, which differs: a
 * verify against it would report a difference), and the result's "Before" is what that snapshot holds in the
 * file — as qemu-img map counts the data of `qemu-img convert -l` of it — not the whole file's size.
 */
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { must, qemuIo, run } from '../helpers';
import { formatBytes } from '../../src-renderer/text';
import { e2eSession, SHOTS, test } from './browser';

const session = e2eSession('dw-e2e-snapexport-');

function dataBytes(path: string): number {
  const entries = JSON.parse(must('qemu-img', ['map', '--output=json', path]).stdout) as Array<{ length: number; data: boolean }>;
  return entries.filter((e) => e.data).reduce((n, e) => n + e.length, 0);
}

test('a snapshot exported with verify: compared with the snapshot, "Before" is the snapshot’s own data', async () => {
  const img = session.work.path('vm.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '64M']);
  qemuIo(img, 'qcow2', ['write -P 0x11 0 6M']);
  must('qemu-img', ['snapshot', '-c', 'installed', img]);
  qemuIo(img, 'qcow2', ['write -P 0x22 16M 12M', 'write -P 0x23 2M 1M']);
  must('qemu-img', ['snapshot', '-c', 'configured', img]);
  qemuIo(img, 'qcow2', ['write -P 0x33 40M 8M']);

  // The oracle: the snapshot as qemu-img exports it, and the data qemu-img finds in that copy.
  const expect = session.work.path('expect.qcow2');
  must('qemu-img', ['convert', '-O', 'qcow2', '-l', 'snapshot.name=installed', img, expect]);
  const held = dataBytes(expect);
  assert.equal(held, 6 * 1024 * 1024);
  const whole = statSync(img).blocks * 512;
  assert.notEqual(formatBytes(held), formatBytes(whole), 'the file holds much more than the snapshot');
  // The image now is not the snapshot: a verify against the current state would find a difference.
  assert.equal(run('qemu-img', ['compare', expect, img]).status, 1);

  const { page } = session.browser;
  await page.goto(session.host.url);
  await page.getByLabel('Image path').fill(img);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  await page.getByRole('heading', { name: 'vm.qcow2', level: 1 }).waitFor();
  await page.getByTestId('open-snapshots').click();
  const timeline = page.getByTestId('timeline');
  await timeline.locator('[data-snapshot="installed"]').click();
  await page.getByTestId('export').click();
  await page.getByTestId('export-snapshot').getByText('installed').waitFor();
  await page.locator('.format-choice[data-format="qcow2"]').click();
  const verify = page.getByLabel('Verify afterwards: compare the new image with the snapshot');
  await verify.waitFor();
  assert.equal(await verify.isChecked(), true, 'verify is offered and on');
  const target = session.work.path('installed.qcow2');
  await page.getByLabel('Save as').fill(target);
  await page.getByLabel('Save as').blur();
  await page.getByRole('button', { name: 'Review' }).click();
  await page.getByRole('button', { name: 'Convert', exact: true }).click();
  const result = page.getByTestId('result');
  await result.waitFor({ timeout: 60_000 });
  await page.getByTestId('verified').waitFor();
  assert.match(await page.getByTestId('verified').innerText(), /holds exactly what the snapshot “installed” holds/);
  const before = (await page.getByTestId('before').innerText()).replace(/\s+/g, ' ');
  assert.match(before, new RegExp(`^Before ${formatBytes(held).replace('.', '\\.')} held by “installed” in the ${formatBytes(whole).replace('.', '\\.')} file`), before);
  await page.screenshot({ path: join(SHOTS, 'snapshot-export-result.png'), fullPage: true });
  must('qemu-img', ['compare', expect, target]);
  assert.deepEqual(session.browser.problems, []);
});
