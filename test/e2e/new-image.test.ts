/**
 * The New Image wizard in Chromium against the browser host: a person makes a 3 GiB qcow2 with a chosen
 * cluster size (qemu-img info and check agree), sees a bad option refused inline, and makes one image of every
 * other format this build can create; each opens in Inspect at the end. Screenshots at 1280×800 and 800×600.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright';
import { formatSummaries } from '../../src-main/registry';
import { must, run } from '../helpers';
import { e2eSession, SHOTS, test } from './browser';

const session = e2eSession('dw-e2e-new-');

async function startWizard(page: Page, format: string): Promise<void> {
  await page.goto(session.host.url);
  await page.getByRole('button', { name: 'New image…' }).click();
  await page.locator(`.format-choice[data-format="${format}"]`).click();
}

async function saveAs(page: Page, path: string): Promise<void> {
  const target = page.getByLabel('Save as');
  await target.fill(path);
  await target.blur();
}

test('a 3 GiB qcow2 with 128 KiB clusters, made with the wizard, is what qemu-img says it is', async () => {
  const { page } = session.browser;
  await startWizard(page, 'qcow2');
  await page.getByRole('heading', { name: 'QCOW2 image' }).waitFor();
  await page.getByLabel('Virtual size').fill('3G');
  // A cluster size that is not a power of two is refused where it is typed.
  const cluster = page.getByLabel('Cluster size');
  await cluster.fill('3000');
  await page.getByText('A power of two: 512, 4k, 64k, 1M…').waitFor();
  assert.equal(await page.getByRole('button', { name: 'Review' }).isDisabled(), true);
  await page.screenshot({ path: join(SHOTS, 'new-invalid-1280.png'), fullPage: true });
  await cluster.fill('128k');
  const target = session.work.path('wizard.qcow2');
  await saveAs(page, target);
  await page.getByText(/free in that folder/).waitFor();
  await page.screenshot({ path: join(SHOTS, 'new-details-1280.png'), fullPage: true });
  await page.setViewportSize({ width: 800, height: 600 });
  await page.screenshot({ path: join(SHOTS, 'new-details-800.png'), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.getByRole('button', { name: 'Review' }).click();
  const review = page.getByTestId('review');
  await review.waitFor();
  assert.match(await review.innerText(), /A QCOW2 image of 3 GiB, at .*wizard\.qcow2[\s\S]*Cluster size: 128 KiB/);
  await page.screenshot({ path: join(SHOTS, 'new-review-1280.png'), fullPage: true });
  await page.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('heading', { name: 'wizard.qcow2', level: 1 }).waitFor();

  const info = JSON.parse(must('qemu-img', ['info', '--output=json', target]).stdout) as { format: string; 'virtual-size': number; 'cluster-size': number };
  assert.equal(info.format, 'qcow2');
  assert.equal(info['virtual-size'], 3 * 2 ** 30);
  assert.equal(info['cluster-size'], 131072);
  assert.equal(run('qemu-img', ['check', target]).status, 0);
  await page.screenshot({ path: join(SHOTS, 'new-opened-1280.png'), fullPage: true });
  assert.deepEqual(session.browser.problems, []);
});

test('every other format this build creates is offered and made (qemu-img reads what it can)', async () => {
  const { page } = session.browser;
  const base = session.work.path('base.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', base, '64M']);
  for (const f of formatSummaries().filter((s) => s.canCreate && s.name !== 'qcow2')) {
    await startWizard(page, f.name);
    await page.getByRole('heading', { name: `${f.label} image` }).waitFor();
    await page.getByLabel('Virtual size').fill('64M');
    if (f.backing === 'required') {
      await page.getByLabel('Backing file', { exact: true }).fill(base);
      await page.getByRole('button', { name: 'Check' }).click();
      await page.getByTestId('backing-found').waitFor();
    }
    const target = session.work.path(`made.${f.extensions[0] ?? f.name}`);
    await saveAs(page, target);
    await page.getByRole('button', { name: 'Review' }).click();
    await page.getByRole('button', { name: 'Create' }).click();
    await page.getByRole('heading', { name: `made.${f.extensions[0] ?? f.name}`, level: 1 }).waitFor();
    // qemu-img dropped UML COW: uml_moo must merge it (it refuses a header that does not match its base).
    if (f.name === 'cow') must('uml_moo', [target, session.work.path('merged.raw')]);
    else {
      const info = JSON.parse(must('qemu-img', ['info', '--output=json', target]).stdout) as { format: string; 'virtual-size': number };
      assert.equal(info.format, f.name);
      // The size qemu-img gives the same request (a VHD's is rounded to its CHS geometry, as qemu-img rounds it).
      const ref = session.work.path(`ref.${f.name}`);
      must('qemu-img', ['create', '-q', '-f', f.name, ref, '64M']);
      const expected = (JSON.parse(must('qemu-img', ['info', '--output=json', '-f', f.name, ref]).stdout) as { 'virtual-size': number })['virtual-size'];
      assert.equal(info['virtual-size'], expected, f.name);
    }
  }
  assert.deepEqual(session.browser.problems, []);
});

test('a file that is no disk image is replaced only after the review asks a second time', async () => {
  const { page } = session.browser;
  const target = session.work.path('notes.qcow2');
  writeFileSync(target, 'my notes, not a disk image\n');
  await startWizard(page, 'qcow2');
  await page.getByLabel('Virtual size').fill('64M');
  await saveAs(page, target);
  await page.getByTestId('target-not-image').waitFor();
  await page.getByRole('button', { name: 'Review' }).click();
  const review = page.getByTestId('review');
  await review.waitFor();
  assert.match(await review.innerText(), /not a disk image, and it is replaced/);
  const create = page.getByRole('button', { name: 'Create' });
  assert.equal(await create.isDisabled(), true, 'Create waits for the second answer');
  await page.screenshot({ path: join(SHOTS, 'new-replace-not-image-1280.png'), fullPage: true });
  assert.equal(readFileSync(target, 'utf8'), 'my notes, not a disk image\n');
  await page.getByTestId('confirm-replace-not-image').getByRole('checkbox').check();
  await create.click();
  await page.getByRole('heading', { name: 'notes.qcow2', level: 1 }).waitFor();
  const info = JSON.parse(must('qemu-img', ['info', '--output=json', target]).stdout) as { format: string; 'virtual-size': number };
  assert.equal(info.format, 'qcow2');
  assert.equal(info['virtual-size'], 64 * 2 ** 20);
  assert.deepEqual(session.browser.problems, []);
});
