/**
 * Disks for other hypervisors and clouds, by clicking (issue: VHD and VDI, and targets): a 64 MiB + 1 sector
 * qcow2 converted "For Azure" is a fixed VHD of 65 MiB that qemu-img reads with that size (the wizard says by
 * how much it rounded), one converted "For VirtualBox" is a VDI qemu-img finds identical and clean; Inspect's
 * "Ready for Azure" card of a dynamic VHD says what Azure would refuse, and its button opens Convert for Azure;
 * Inspect's fingerprint of the VDI is the documented checksum (docs/checksum.md's script) of the source's disk.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright';
import { ROOT, must, qemuIo } from '../helpers';
import { e2eSession, SHOTS, test } from './browser';

const session = e2eSession('dw-e2e-targets-');
const MiB = 1024 * 1024;

async function open(page: Page, image: string, name: string): Promise<void> {
  await page.goto(session.host.url);
  await page.getByLabel('Image path').fill(image);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  await page.getByRole('heading', { name, level: 1 }).waitFor();
}

async function convertFor(page: Page, target: string, out: string, shot: string): Promise<void> {
  await page.getByRole('button', { name: 'Convert…' }).click();
  await page.locator(`.host-target[data-target="${target}"]`).click();
  await page.getByLabel('Save as').fill(out);
  await page.getByLabel('Save as').blur();
  await page.screenshot({ path: join(SHOTS, `${shot}-target-1280.png`), fullPage: true });
  await page.getByRole('button', { name: 'Review' }).click();
  await page.getByTestId('review').waitFor();
  await page.screenshot({ path: join(SHOTS, `${shot}-review-1280.png`), fullPage: true });
  await page.getByRole('button', { name: 'Convert', exact: true }).click();
  await page.getByTestId('result').waitFor({ timeout: 60_000 });
  await page.getByTestId('verified').waitFor();
}

test('Convert "For Azure" and "For VirtualBox" by clicking: qemu-img reads a fixed VHD of 65 MiB and an identical, clean VDI', async () => {
  const { page } = session.browser;
  const src = session.work.path('disk.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', src, String(64 * MiB + 512)]);
  qemuIo(src, 'qcow2', ['write -P 0x5a 0 2M', `write -P 0x6b ${64 * MiB} 512`]);

  await open(page, src, 'disk.qcow2');
  const azure = session.work.path('disk-azure.vhd');
  await page.getByRole('button', { name: 'Convert…' }).click();
  await page.locator('.host-target[data-target="azure"]').click();
  const note = page.getByTestId('host-target-note');
  await note.waitFor();
  assert.match(await note.innerText(), /rounded up from 67109376 to 68157440 bytes \(1048064 bytes more/);
  await page.getByRole('button', { name: 'Close' }).click();
  await open(page, src, 'disk.qcow2');
  await convertFor(page, 'azure', azure, 'azure');
  const info = JSON.parse(must('qemu-img', ['info', '--output', 'json', '-f', 'vpc', azure]).stdout);
  assert.equal(info['virtual-size'], 65 * MiB);
  assert.equal(statSync(azure).size, 65 * MiB + 512);
  assert.match(must('qemu-img', ['compare', '-f', 'qcow2', '-F', 'vpc', src, azure]).stdout, /^Images are identical\.$/m);

  await open(page, src, 'disk.qcow2');
  const vbox = session.work.path('disk.vdi');
  await convertFor(page, 'virtualbox', vbox, 'virtualbox');
  const vinfo = JSON.parse(must('qemu-img', ['info', '--output', 'json', vbox]).stdout);
  assert.equal(vinfo.format, 'vdi');
  assert.equal(must('qemu-img', ['compare', '-f', 'qcow2', '-F', 'vdi', src, vbox]).stdout.trim(), 'Images are identical.');
  must('qemu-img', ['check', '-f', 'vdi', vbox]);

  // Inspect's fingerprint of the VDI is the documented checksum of the disk qemu-img reads from the source.
  await open(page, vbox, 'disk.vdi');
  const card = page.getByTestId('fingerprint');
  await card.getByRole('button', { name: 'Compute the fingerprint' }).click();
  await card.getByTestId('fingerprint-value').waitFor({ timeout: 60_000 });
  const shown = (await card.getByTestId('fingerprint-value').innerText()).trim();
  const flat = session.work.path('flat.raw');
  must('qemu-img', ['convert', '-O', 'raw', src, flat]);
  const script = /```python\n([\s\S]*?)```/.exec(readFileSync(join(ROOT, 'docs', 'checksum.md'), 'utf8'))![1];
  writeFileSync(session.work.path('blksum.py'), script);
  assert.equal(shown, must('python3', [session.work.path('blksum.py'), flat]).stdout.split(/\s+/)[0]);
  await card.screenshot({ path: join(SHOTS, 'fingerprint.png') });
  assert.deepEqual(session.browser.problems, []);
});

test('Inspect: the "Ready for Azure" card of a dynamic VHD names what Azure refuses; its button opens Convert for Azure', async () => {
  const { page } = session.browser;
  const dyn = session.work.path('dynamic.vhd');
  must('qemu-img', ['create', '-q', '-f', 'vpc', '-o', 'subformat=dynamic', dyn, '100M']);
  await open(page, dyn, 'dynamic.vhd');
  const card = page.getByTestId('ready-for');
  await card.getByTestId('ready-findings').waitFor();
  const findings = await card.getByTestId('ready-findings').innerText();
  assert.match(findings, /Azure takes only fixed VHDs; this one is dynamic/);
  await card.screenshot({ path: join(SHOTS, 'ready-for-azure.png') });
  await page.screenshot({ path: join(SHOTS, 'inspect-vhd-1280.png'), fullPage: true });
  await card.getByRole('button', { name: 'Convert for Azure…' }).click();
  await page.locator('.host-target[data-target="azure"][aria-pressed="true"]').waitFor();
  assert.deepEqual(session.browser.problems, []);
});

test('Inspect: "Ready for ESXi" of a split VMDK names the command it would take, kept on one line ("vmkfstools -i" not broken at its hyphen)', async () => {
  const { page } = session.browser;
  const split = session.work.path('split.vmdk');
  must('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', split, '100M']);
  await open(page, split, 'split.vmdk');
  const card = page.getByTestId('ready-for');
  await card.locator('#ready-target').selectOption('esxi');
  const finding = card.locator('[data-rule="subformat"]');
  await finding.waitFor();
  assert.match(await finding.innerText(), /clones monolithicSparse \(vmkfstools -i\); this VMDK is twoGbMaxExtentSparse/);
  const kept = finding.locator('.keep-together');
  assert.equal(await kept.innerText(), 'vmkfstools -i');
  assert.equal(await kept.evaluate((el) => getComputedStyle(el).whiteSpace), 'nowrap');
  assert.deepEqual(session.browser.problems, []);
});
