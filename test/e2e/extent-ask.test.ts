/**
 * The question before reading a VMDK extent that lies outside the descriptor's folder, in Chromium against the
 * browser host: the Inspect view names the exact data file and asks; after "Read this file" the map appears and
 * its legend matches `qemu-img map` of the same descriptor (qemu follows extents wherever they are).
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { must, qemuIo } from '../helpers';
import { e2eSession, SHOTS, test } from './browser';
import { formatPercent } from '../../src-renderer/text';

const session = e2eSession('dw-e2e-extent-');

test('a VMDK whose extent lies outside its folder asks before reading it, then maps as qemu-img does', async () => {
  const dataDir = session.work.path('data');
  const descDir = session.work.path('vm');
  mkdirSync(dataDir);
  mkdirSync(descDir);
  must('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=monolithicFlat', join(dataDir, 'disk.vmdk'), '8M']);
  qemuIo(join(dataDir, 'disk.vmdk'), 'vmdk', ['write -P 0x5a 0 2M']);
  // The descriptor moves to its own folder and names the extent by a relative path leading out of it.
  const desc = join(descDir, 'disk.vmdk');
  writeFileSync(desc, readFileSync(join(dataDir, 'disk.vmdk'), 'latin1').replace('"disk-flat.vmdk"', '"../data/disk-flat.vmdk"'), 'latin1');
  const extent = join(dataDir, 'disk-flat.vmdk');
  const qemuData = (JSON.parse(must('qemu-img', ['map', '--output=json', desc]).stdout) as Array<{ length: number; data: boolean }>)
    .filter((e) => e.data)
    .reduce((n, e) => n + e.length, 0);

  const { page } = session.browser;
  await page.goto(session.host.url);
  await page.getByLabel('Image path').fill(desc);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  await page.getByRole('heading', { name: 'disk.vmdk', level: 1 }).waitFor();
  const ask = page.getByTestId('backing-question');
  await ask.getByRole('heading', { name: 'Read a data file outside the folder?' }).waitFor();
  assert.equal((await ask.locator('.ask-path').innerText()).trim(), extent, 'the question names the exact file');
  await page.screenshot({ path: join(SHOTS, 'extent-ask-1280.png'), fullPage: true });
  await page.setViewportSize({ width: 800, height: 600 });
  await page.screenshot({ path: join(SHOTS, 'extent-ask-800.png'), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });

  await ask.getByRole('button', { name: 'Read this file' }).click();
  await page.getByRole('img', { name: /^Allocation map:/ }).waitFor();
  await ask.waitFor({ state: 'detached' });
  const dataPercent = formatPercent(qemuData / (8 * 1024 * 1024));
  assert.equal(await page.locator('.legend-item[data-kind="data"] .legend-percent').innerText(), dataPercent, `qemu-img map says ${qemuData} bytes of data`);
  await page.screenshot({ path: join(SHOTS, 'extent-allowed-1280.png'), fullPage: true });
  assert.deepEqual(session.browser.problems, []);
});
