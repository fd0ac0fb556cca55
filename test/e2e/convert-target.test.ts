/**
 * Convert's "Save as" is checked as it is typed: the "a file of that name exists" warning belongs to the path in
 * the field (it went with the default path before, until the field was left), and a folder that does not exist is
 * said at once, with Review held back, instead of after Convert was clicked.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { must } from '../helpers';
import { e2eSession, test } from './browser';
import { layoutDefects } from './layout';

const session = e2eSession('dw-e2e-convert-target-');

test('the target path is checked live: exists-warning follows the typed path, a missing folder is caught before Review', async () => {
  const img = session.work.path('vm.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '16M']);
  // The default target (vm.vmdk beside the source) exists.
  writeFileSync(session.work.path('vm.vmdk'), 'old');
  const { page } = session.browser;
  await page.goto(session.host.url);
  await page.getByLabel('Image path').fill(img);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  await page.getByRole('heading', { name: 'vm.qcow2', level: 1 }).waitFor();
  await page.getByRole('button', { name: 'Convert…' }).click();
  await page.locator('.format-choice[data-format="vmdk"]').click();
  const saveAs = page.getByLabel('Save as');
  const exists = page.getByTestId('target-exists');
  await exists.waitFor();
  assert.equal(await saveAs.inputValue(), session.work.path('vm.vmdk'));

  // Typing a new name (the field keeps the focus): the warning goes, since nothing is there.
  await saveAs.fill(session.work.path('fresh.vmdk'));
  await exists.waitFor({ state: 'detached' });
  assert.ok(await saveAs.evaluate((el) => el === document.activeElement), 'the field still has the focus');
  assert.equal(await page.getByRole('button', { name: 'Review' }).isEnabled(), true);

  // A folder that does not exist: said while typing, and Review waits.
  await saveAs.fill(session.work.path('no-such-folder/out.vmdk'));
  await page.getByText('That folder does not exist.').waitFor();
  assert.equal(await page.getByRole('button', { name: 'Review' }).isDisabled(), true);

  // Back to the existing file: the warning returns for it.
  await saveAs.fill(session.work.path('vm.vmdk'));
  await exists.waitFor();
  assert.deepEqual(await layoutDefects(page), []);
});
