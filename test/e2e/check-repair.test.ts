/**
 * The Check & Repair wizard, clicked through in Chromium against the browser host on real images: a leaky
 * qcow2 made by qemu-img is repaired by clicking (open → Check & Repair → Repair → done) and `qemu-img check`
 * is clean afterwards, with the image as it was kept beside it; a clean image says so and offers no repair.
 * Screenshots at 1280×800 and 800×600 go to test-results/e2e.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readdirSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright';
import { must, qemuIo, run } from '../helpers';
import { Qcow2Patcher } from '../interop/qcow2-check-patch';
import { e2eSession, SHOTS, test } from './browser';

const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

const session = e2eSession('dw-e2e-check-');

async function openImage(page: Page, path: string, name: string): Promise<void> {
  await page.goto(session.host.url);
  await page.getByLabel('Image path').fill(path);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  await page.getByRole('heading', { name, level: 1 }).waitFor();
}

test('a leaky qcow2 is repaired by clicking, and qemu-img check is clean afterwards', async () => {
  const img = session.work.path('leaky.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', img, '16M']);
  qemuIo(img, 'qcow2', ['write -P 0x11 0 256k', 'write -P 0x22 5M 64k']);
  const p = new Qcow2Patcher(img);
  p.setRefcount(p.appendCluster(0x5a), 1);
  p.setRefcount(p.appendCluster(0x5b), 1);
  assert.equal(run('qemu-img', ['check', img]).status, 3, 'qemu-img sees leaks only');
  const before = sha(img);

  const { page } = session.browser;
  await openImage(page, img, 'leaky.qcow2');
  await page.getByRole('button', { name: 'Check & Repair…' }).click();

  const findings = page.getByTestId('findings');
  await findings.waitFor();
  await page.getByRole('heading', { name: 'The image leaks space' }).waitFor();
  assert.match(await findings.locator('.finding[data-kind="leak"]').innerText(), /Harmless: 2 leaked clusters[\s\S]*No data is at risk/);
  assert.equal(await findings.locator('.finding[data-kind="corruption"]').count(), 0);
  // Leaks alone leave one way to repair: said as text, not a radio group of one.
  assert.equal(await page.getByRole('radio').count(), 0, 'no radio button for the one choice');
  assert.equal((await page.getByTestId('repair-only').innerText()).trim(), 'Free the leaked space');
  assert.equal(await page.getByLabel('Keep a copy of the image as it was, beside it').isChecked(), true, 'keeping a copy is offered by default');
  assert.equal(sha(img), before, 'checking did not change the image');
  await page.screenshot({ path: join(SHOTS, 'check-findings-1280.png'), fullPage: true });
  await page.setViewportSize({ width: 800, height: 600 });
  await page.screenshot({ path: join(SHOTS, 'check-findings-800.png'), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });

  await page.getByRole('button', { name: 'Repair', exact: true }).click();
  const result = page.getByTestId('result');
  await result.waitFor({ timeout: 30_000 });
  await page.getByRole('heading', { name: 'The image is now clean' }).waitFor();
  assert.match(await result.innerText(), /Freed 2 leaked clusters\./);
  const kept = (await page.getByTestId('kept-copy').locator('code').innerText()).trim();
  await page.screenshot({ path: join(SHOTS, 'check-result-1280.png'), fullPage: true });

  assert.equal(run('qemu-img', ['check', img]).status, 0, 'qemu-img check of the repaired image is clean');
  assert.equal(sha(kept), before, 'the kept copy is the image as it was');
  must('qemu-img', ['compare', kept, img]);
  assert.deepEqual(readdirSync(session.work.dir).filter((n) => n.startsWith('.')), [], 'no temporary file left');

  // Back to the image: the page shows it again.
  await page.getByRole('button', { name: 'Back to the image' }).click();
  await page.getByRole('heading', { name: 'leaky.qcow2', level: 1 }).waitFor();
  assert.deepEqual(session.browser.problems, []);
});

test('a clean image says so, and no repair is offered', async () => {
  const img = session.work.path('clean.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '16M']);
  qemuIo(img, 'qcow2', ['write -P 0x11 0 1M']);
  const { page } = session.browser;
  // From the home screen: the path field's Check & Repair.
  await page.goto(session.host.url);
  await page.getByLabel('Image path').fill(img);
  await page.getByRole('button', { name: 'Check & Repair…', exact: true }).click();
  await page.getByRole('heading', { name: 'The image is clean' }).waitFor();
  assert.equal(await page.getByRole('button', { name: 'Repair', exact: true }).count(), 0);
  await page.screenshot({ path: join(SHOTS, 'check-clean-1280.png'), fullPage: true });
  await page.setViewportSize({ width: 800, height: 600 });
  await page.screenshot({ path: join(SHOTS, 'check-clean-800.png'), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });
  assert.deepEqual(session.browser.problems, []);
});

test('a damaged qcow2 (a refcount too low) is shown as data at risk and repaired with everything', async () => {
  const img = session.work.path('damaged.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', img, '16M']);
  qemuIo(img, 'qcow2', ['write -P 0x11 0 256k']);
  const reference = session.work.path('damaged-reference.raw');
  must('qemu-img', ['convert', '-O', 'raw', img, reference]);
  const p = new Qcow2Patcher(img);
  p.setRefcount(p.dataClusters()[2].offset / p.clusterSize, 0);
  assert.equal(run('qemu-img', ['check', img]).status, 2);

  const { page } = session.browser;
  await openImage(page, img, 'damaged.qcow2');
  await page.getByRole('button', { name: 'Check & Repair…' }).click();
  await page.getByRole('heading', { name: 'The image is damaged' }).waitFor();
  assert.match(await page.locator('.finding[data-kind="corruption"]').innerText(), /Data at risk/);
  assert.equal(await page.getByLabel(/Repair everything/).isChecked(), true);
  assert.equal(await page.getByRole('radio').count(), 2, 'damage offers two ways: everything, or the leaks only');
  await page.getByLabel('Keep a copy of the image as it was, beside it').uncheck();
  await page.screenshot({ path: join(SHOTS, 'check-damaged-1280.png'), fullPage: true });
  await page.getByRole('button', { name: 'Repair', exact: true }).click();
  await page.getByRole('heading', { name: 'The image is now clean' }).waitFor({ timeout: 30_000 });
  assert.equal(await page.getByTestId('kept-copy').count(), 0);
  assert.equal(run('qemu-img', ['check', img]).status, 0);
  must('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', reference, img]);
  assert.deepEqual(session.browser.problems, []);
});

test('an unclean Parallels image (qemu-img made, in-use mark set) is repaired by clicking from its page: open → Repair… → Repair → clean', async () => {
  const img = session.work.path('crashed.hds');
  must('qemu-img', ['create', '-q', '-f', 'parallels', img, '32M']);
  qemuIo(img, 'parallels', ['write -P 0x11 0 1M', 'write -P 0x22 9M 2M']);
  const reference = session.work.path('crashed-reference.raw');
  must('qemu-img', ['convert', '-O', 'raw', img, reference]);
  // The in-use mark (header offset 44, "Ynot" little-endian) as a crashed Parallels VM leaves it.
  const fd = openSync(img, 'r+');
  writeSync(fd, Buffer.from([0x59, 0x6e, 0x6f, 0x74]), 0, 4, 44);
  closeSync(fd);
  assert.equal(run('qemu-img', ['check', img]).status, 2, 'qemu-img sees the unclean mark as an error');

  const { page } = session.browser;
  await openImage(page, img, 'crashed.hds');
  const banner = page.getByTestId('unclean-banner');
  await banner.waitFor();
  await page.screenshot({ path: join(SHOTS, 'parallels-unclean-1280.png'), fullPage: true });
  await page.setViewportSize({ width: 800, height: 600 });
  await page.screenshot({ path: join(SHOTS, 'parallels-unclean-800.png'), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });
  await banner.getByRole('button', { name: 'Repair…' }).click();
  // Its only finding is the in-use mark: named as such, not as damage (check-unclean.test.ts says how it looks).
  await page.getByRole('heading', { name: 'The image was not closed cleanly' }).waitFor();
  assert.match(await page.locator('.finding[data-kind="unclean"]').innerText(), /Not closed cleanly/);
  await page.screenshot({ path: join(SHOTS, 'parallels-findings-1280.png'), fullPage: true });
  await page.getByRole('button', { name: 'Repair', exact: true }).click();
  await page.getByRole('heading', { name: 'The image is now clean' }).waitFor({ timeout: 30_000 });
  await page.screenshot({ path: join(SHOTS, 'parallels-repaired-1280.png'), fullPage: true });
  assert.equal(run('qemu-img', ['check', img]).status, 0, 'qemu-img check is clean after the repair');
  must('qemu-img', ['compare', '-f', 'raw', '-F', 'parallels', reference, img]);
  await page.getByRole('button', { name: 'Back to the image' }).click();
  await page.getByRole('heading', { name: 'crashed.hds', level: 1 }).waitFor();
  assert.equal(await page.getByTestId('unclean-banner').count(), 0, 'the page no longer says it is unclean');
  assert.deepEqual(session.browser.problems, []);
});
