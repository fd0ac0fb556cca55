/**
 * Recently opened images: kept per user in the host's config file, listed on the home screen of a new
 * launch, newest first, and opened by a click; the home screen's Convert… starts the Convert wizard on the
 * typed path.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { startHost, type Host } from '../../src-main/host/server';
import { must, scratch } from '../helpers';
import { launch, type Browser } from './browser';

let browser: Browser;
const work = scratch('dw-e2e-recent-');
const recentFile = work.path('config/recent.json');

before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
  work.cleanup();
});

test('images opened in one launch are listed on the next launch’s home screen and open with a click', async () => {
  const a = work.path('first.qcow2');
  const b = work.path('second.raw');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', a, '16M']);
  must('qemu-img', ['create', '-q', '-f', 'raw', b, '8M']);
  let host: Host = await startHost({ port: 0, recentFile });
  const { page } = browser;
  for (const [path, name] of [
    [a, 'first.qcow2'],
    [b, 'second.raw'],
  ]) {
    await page.goto(host.url);
    await page.getByLabel('Image path').fill(path);
    await page.getByRole('button', { name: 'Open', exact: true }).click();
    // A raw file has no header: the app asks before taking it as a raw disk.
    if (name.endsWith('.raw')) await page.getByRole('button', { name: 'Open as raw' }).click();
    await page.getByRole('heading', { name, level: 1 }).waitFor();
  }
  await host.close();
  assert.deepEqual(JSON.parse(readFileSync(recentFile, 'utf8')), [b, a], 'kept in the config file, newest first');

  host = await startHost({ port: 0, recentFile });
  try {
    await page.goto(host.url);
    const list = page.getByRole('list', { name: 'Recent images' });
    await list.waitFor();
    assert.match(await list.innerText(), /second\.raw[\s\S]*first\.qcow2/);
    await list.getByRole('button', { name: /first\.qcow2/ }).click();
    await page.getByRole('heading', { name: 'first.qcow2', level: 1 }).waitFor();

    await page.goto(host.url);
    await page.getByLabel('Image path').fill(a);
    await page.getByRole('button', { name: 'Convert…' }).click();
    await page.getByRole('heading', { name: 'Convert', level: 1 }).waitFor();
    assert.deepEqual(browser.problems, []);
  } finally {
    await host.close();
  }
});
