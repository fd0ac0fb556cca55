/**
 * "Merge into base…" and "Change base…" on the Inspect page, in Chromium against the browser host, on chains
 * qemu-img made: the confirmation names the files that change, and the result equals what `qemu-img commit`
 * and `qemu-img rebase` make of copies of the same chain (qemu-img compare of every image, check clean).
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright';
import { must, qemuIo } from '../helpers';
import { e2eSession, SHOTS, test } from './browser';

const session = e2eSession('dw-e2e-backing-ops-');

async function open(page: Page, path: string, name: string): Promise<void> {
  await page.goto(session.host.url);
  await page.getByLabel('Image path').fill(path);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  await page.getByRole('heading', { name, level: 1 }).waitFor();
}

function chain(dir: string): { base: string; top: string } {
  mkdirSync(dir);
  const base = join(dir, 'base.qcow2');
  const top = join(dir, 'top.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', base, '16M']);
  qemuIo(base, 'qcow2', ['write -P 0x11 0 4M']);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top]);
  qemuIo(top, 'qcow2', ['write -P 0x22 2M 4M', 'write -z 8M 1M']);
  return { base, top };
}

function copyChain(from: { base: string; top: string }, dir: string): { base: string; top: string } {
  mkdirSync(dir);
  const c = { base: join(dir, 'base.qcow2'), top: join(dir, 'top.qcow2') };
  copyFileSync(from.base, c.base);
  copyFileSync(from.top, c.top);
  return c;
}

test('Merge into base: the base and the emptied image equal qemu-img commit\'s', async () => {
  const ours = chain(session.work.path('commit'));
  const theirs = copyChain(ours, session.work.path('commit-qemu'));
  must('qemu-img', ['commit', '-q', theirs.top]);

  const { page } = session.browser;
  await open(page, ours.top, 'top.qcow2');
  await page.getByTestId('commit').click();
  const confirm = page.getByTestId('commit-confirm');
  await confirm.getByText('Written:').waitFor();
  const text = await confirm.innerText();
  assert.match(text, new RegExp(`Written: ${ours.base.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} receives the data top\\.qcow2 holds`));
  assert.match(text, /Emptied: .*top\.qcow2 then reads everything from the base/);
  await page.screenshot({ path: join(SHOTS, 'commit-confirm-1280.png'), fullPage: true });
  await page.setViewportSize({ width: 800, height: 600 });
  await page.screenshot({ path: join(SHOTS, 'commit-confirm-800.png'), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.getByTestId('commit-run').click();
  await page.getByTestId('backing-done').getByText(/^Merged into .*base\.qcow2\. The image is now empty/).waitFor({ timeout: 60_000 });

  must('qemu-img', ['check', ours.base]);
  must('qemu-img', ['check', ours.top]);
  must('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', ours.base, theirs.base]);
  must('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', ours.top, theirs.top]);
  const mapOf = (p: string) => JSON.parse(must('qemu-img', ['map', '--output=json', p]).stdout).filter((e: { depth: number; data: boolean }) => e.depth === 0 && e.data).length;
  assert.equal(mapOf(ours.top), mapOf(theirs.top), 'the emptied image holds no data of its own, as qemu-img leaves it');
  assert.deepEqual(session.browser.problems, []);
});

test('Change base: the image reads the same on its new base, as after qemu-img rebase', async () => {
  const ours = chain(session.work.path('rebase'));
  const other = session.work.path('rebase/other.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', other, '16M']);
  qemuIo(other, 'qcow2', ['write -P 0x33 0 1M', 'write -P 0x44 12M 2M']);
  const theirs = copyChain(ours, session.work.path('rebase-qemu'));
  copyFileSync(other, session.work.path('rebase-qemu/other.qcow2'));
  must('qemu-img', ['rebase', '-q', '-b', 'other.qcow2', '-F', 'qcow2', theirs.top]);
  const before = session.work.path('before.raw');
  must('qemu-img', ['convert', '-O', 'raw', ours.top, before]);

  const { page } = session.browser;
  await open(page, ours.top, 'top.qcow2');
  await page.getByTestId('rebase').click();
  await page.getByLabel('New base image').fill(other);
  await page.getByLabel('New base image').blur();
  const confirm = page.getByTestId('rebase-confirm');
  await confirm.getByText(/Only read: .*other\.qcow2 \(qcow2, the new base\)/).waitFor();
  await page.screenshot({ path: join(SHOTS, 'rebase-confirm-1280.png'), fullPage: true });
  await page.getByTestId('rebase-run').click();
  await page.getByTestId('backing-done').waitFor({ timeout: 60_000 }).catch(async (err) => {
    throw new Error(`${(err as Error).message}\n${await page.locator('main').innerText()}`);
  });

  must('qemu-img', ['check', ours.top]);
  const info = JSON.parse(must('qemu-img', ['info', '--output=json', ours.top]).stdout);
  assert.equal(info['backing-filename'], 'other.qcow2', 'the new base is named beside the image, as qemu-img rebase -b other.qcow2 names it');
  assert.equal(info['backing-filename-format'], 'qcow2');
  must('qemu-img', ['compare', '-F', 'raw', ours.top, before]);
  must('qemu-img', ['compare', ours.top, theirs.top]);
  assert.deepEqual(session.browser.problems, []);
});
