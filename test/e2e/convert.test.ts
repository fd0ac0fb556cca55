/**
 * The Convert wizard in Chromium against the browser host: a qcow2 with data is converted by clicking, to raw
 * and to every other format this build writes, with progress shown and a verify at the end; each result is
 * identical to the source under `qemu-img compare` (where qemu-img reads the format). A large convert
 * cancelled mid-way leaves nothing behind. Screenshots at 1280×800 and 800×600.
 */
import assert from 'node:assert/strict';
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright';
import { formatSummaries } from '../../src-main/registry';
import { must, qemuIo, run } from '../helpers';
import { e2eSession, SHOTS, test } from './browser';
import { toneOf } from './tones';

const session = e2eSession('dw-e2e-convert-');

async function openAndConvert(page: Page, image: string, name: string): Promise<void> {
  await page.goto(session.host.url);
  await page.getByLabel('Image path').fill(image);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  // A raw file has no header: the app asks before taking it as a raw disk.
  if (name.endsWith('.raw')) await page.getByRole('button', { name: 'Open as raw' }).click();
  await page.getByRole('heading', { name, level: 1 }).waitFor();
  await page.getByRole('img', { name: /^Allocation map:/ }).waitFor();
  await page.getByRole('button', { name: 'Convert…' }).click();
}

test('a qcow2 with data converted by clicking to raw and to every other format written here is identical under qemu-img compare', async () => {
  const src = session.work.path('source.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', src, '64M']);
  qemuIo(src, 'qcow2', ['write -P 0x11 0 3M', 'write -P 0x22 20M 1M', 'write -z 30M 2M', 'write -P 0x33 60M 64k']);
  const { page } = session.browser;
  const formats = formatSummaries().filter((f) => f.canCreate && f.backing !== 'required');
  assert.ok(formats.some((f) => f.name === 'raw'));
  for (const f of formats) {
    await openAndConvert(page, src, 'source.qcow2');
    await page.locator(`.format-choice[data-format="${f.name}"]`).click();
    const target = session.work.path(`converted-${f.name}.${f.extensions[0] ?? f.name}`);
    await page.getByLabel('Save as').fill(target);
    await page.getByLabel('Save as').blur();
    if (f.name === 'raw') {
      await page.screenshot({ path: join(SHOTS, 'convert-target-1280.png'), fullPage: true });
      await page.setViewportSize({ width: 800, height: 600 });
      await page.screenshot({ path: join(SHOTS, 'convert-target-800.png'), fullPage: true });
      await page.setViewportSize({ width: 1280, height: 800 });
    }
    await page.getByRole('button', { name: 'Review' }).click();
    const estimate = page.getByTestId('estimate');
    await estimate.waitFor();
    let measuredBytes: number | undefined;
    if (f.name === 'raw') assert.match(await estimate.innerText(), /about 4(\.\d+)? MiB/, 'a raw target is estimated by the data the source holds');
    else {
      await estimate.getByText(/measured as qemu-img measure does/).waitFor();
      measuredBytes = Number(await estimate.getAttribute('data-bytes'));
      if (f.name === 'qcow2') {
        const q = JSON.parse(must('qemu-img', ['measure', '--output=json', '-O', 'qcow2', src]).stdout);
        assert.equal(measuredBytes, q.required, 'the qcow2 estimate is qemu-img measure\'s');
      }
    }
    await page.getByRole('button', { name: 'Convert', exact: true }).click();
    await page.getByTestId('result').waitFor({ timeout: 60_000 });
    await page.getByTestId('verified').waitFor();
    if (f.name === 'raw') await page.screenshot({ path: join(SHOTS, 'convert-result-1280.png'), fullPage: true });
    const r = run('qemu-img', ['compare', '-f', 'qcow2', '-F', f.name, src, target]);
    assert.equal(r.status, 0, `${f.name}: ${r.stdout}${r.stderr}`);
    if (f.name === 'qcow2') assert.equal(run('qemu-img', ['check', target]).status, 0);
    if (measuredBytes !== undefined) assert.ok(statSync(target).size <= measuredBytes, `${f.name}: the new file (${statSync(target).size} bytes) fits the estimate (${measuredBytes})`);
    await page.getByRole('button', { name: 'Open the new image' }).click();
    await page.getByRole('heading', { name: `converted-${f.name}.${f.extensions[0] ?? f.name}`, level: 1 }).waitFor();
  }
  assert.deepEqual(session.browser.problems, []);
});

test('cancelling a large convert leaves neither the target nor a temporary file', async () => {
  const src = session.work.path('big.raw');
  const buf = Buffer.alloc(512 << 20);
  for (let i = 0; i < buf.length; i += 4096) buf[i] = (i >> 12) & 0xff || 1;
  writeFileSync(src, buf);
  const { page } = session.browser;
  await openAndConvert(page, src, 'big.raw');
  await page.locator('.format-choice[data-format="qcow2"]').click();
  const target = session.work.path('big-out.qcow2');
  await page.getByLabel('Save as').fill(target);
  await page.getByLabel('Save as').blur();
  await page.getByRole('button', { name: 'Review' }).click();
  await page.getByRole('button', { name: 'Convert', exact: true }).click();
  await page.getByText(/Converting to QCOW2/).waitFor();
  await page.getByText(/^[1-9]\d?%$/).waitFor({ timeout: 30_000 });
  // Cancel at once: on a fast or idle disk the copy (and the verify after it) can finish while a full-page
  // screenshot is taken, and then there is nothing left to cancel. The picture is taken after.
  await page.getByRole('button', { name: 'Cancel' }).click();
  await page.screenshot({ path: join(SHOTS, 'convert-cancelled-1280.png'), fullPage: true });
  await page.getByText('The conversion was cancelled; nothing was left behind.').waitFor().catch(async (e) => { console.log('page at the failure:', page.url(), await page.locator('main').innerText()); throw e; });
  assert.equal(await toneOf(page, '[data-testid="cancelled-note"]'), 'info', 'a cancel the user asked for is not a warning: the neutral tone');
  const left = readdirSync(session.work.dir).filter((n) => n.includes('big-out'));
  assert.deepEqual(left, []);
  assert.deepEqual(session.browser.problems, []);
});
