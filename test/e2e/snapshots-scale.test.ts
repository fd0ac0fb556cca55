/**
 * The snapshot browser on a qcow2 with 1,000 snapshots (taken here through the engine, in one process: 1,000 runs of
 * qemu-img snapshot -c took five minutes; qemu-img info then counts them): the list stays one
 * screen tall and scrolls, a filter finds one by name, the actions on the selected snapshot sit in view beside the
 * list and stay there after a Shift-click compare, and Take / Delete open their form where the person is looking,
 * with the focus in it. The layout audit finds nothing wrong at either size.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Locator, Page } from 'playwright';
import { createSnapshot } from '../../src-main/services/snapshot';
import { must } from '../helpers';
import { e2eSession, SHOTS, test } from './browser';
import { layoutDefects } from './layout';

const session = e2eSession('dw-e2e-snap-scale-');
const COUNT = 1000;

async function inView(page: Page, what: Locator, name: string): Promise<void> {
  const box = await what.boundingBox();
  const vp = page.viewportSize()!;
  assert.ok(box, `${name} is shown`);
  assert.ok(box.y >= 0 && box.y + box.height <= vp.height, `${name} is in view (top ${Math.round(box.y)}, height ${Math.round(box.height)}, window ${vp.height})`);
}

test('1,000 snapshots: a compact, filterable list; actions and forms in view; Shift-click compare keeps the actions', async () => {
  const img = session.work.path('many.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '64M']);
  for (let i = 1; i <= COUNT; i++) await createSnapshot(img, `snap-${String(i).padStart(4, '0')}`);
  const info = JSON.parse(must('qemu-img', ['info', '--output', 'json', img]).stdout);
  assert.equal(info.snapshots.length, COUNT);

  const { page } = session.browser;
  await page.goto(session.host.url);
  await page.getByLabel('Image path').fill(img);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  await page.getByRole('heading', { name: 'many.qcow2', level: 1 }).waitFor();
  await page.getByTestId('open-snapshots').click();
  const timeline = page.getByTestId('timeline');
  await timeline.locator('[data-snapshot="snap-1000"]').waitFor({ timeout: 120_000 });

  const listBox = (await timeline.boundingBox())!;
  assert.ok(listBox.height < 500, `the list of ${COUNT} is ${Math.round(listBox.height)} px tall, and scrolls`);
  assert.equal(await page.getByTestId('filter-count').innerText(), `${COUNT.toLocaleString('en-US')} of ${COUNT.toLocaleString('en-US')}`);

  await page.getByLabel('Find a snapshot').fill('snap-0999');
  assert.equal(await page.getByTestId('filter-count').innerText(), `1 of ${COUNT.toLocaleString('en-US')}`);
  await timeline.locator('[data-snapshot="snap-0999"]').click();
  await inView(page, page.getByTestId('revert'), 'Revert');
  await inView(page, page.getByTestId('delete'), 'Delete');

  // Shift-click Now: the two are compared, and the actions on snap-0999 stay.
  await page.getByLabel('Find a snapshot').fill('');
  await timeline.locator('[data-snapshot="now"]').click({ modifiers: ['Shift'] });
  await page.getByRole('heading', { name: /^Where “snap-0999” and now differ/ }).waitFor();
  await inView(page, page.getByTestId('revert'), 'Revert after a compare');

  // Rows out of view are not laid out (content-visibility): scrolled to the top, the first one shows in full.
  await page.evaluate("document.querySelector('[data-testid=timeline]').scrollTop = 0");
  const firstRow = timeline.locator('[data-snapshot="snap-0001"]');
  await inView(page, firstRow, 'snap-0001 after scrolling up');
  assert.match(await firstRow.innerText(), /snap-0001[\s\S]*id 1 ·[\s\S]*disk 64 MiB[\s\S]*holds alone/);
  const rowBox = (await firstRow.boundingBox())!;
  assert.ok(rowBox.height > 20 && rowBox.height < 120, `the first row is laid out (${Math.round(rowBox.height)} px tall)`);
  await page.screenshot({ path: join(SHOTS, 'snapshots-1000-top.png') });
  // Back to the end (the layout audit takes a row cut by the list's bottom edge as overlapping what lies below).
  await page.evaluate("document.querySelector('[data-testid=timeline]').scrollTop = 1e9");

  // Delete…: the confirmation opens by the buttons, in view, its button focused.
  await page.getByTestId('delete').click();
  const confirm = page.getByTestId('confirm-button');
  await confirm.waitFor();
  await inView(page, confirm, 'the Delete confirmation');
  assert.ok(await confirm.evaluate((el) => el === document.activeElement), 'the confirmation has the focus');
  await page.getByRole('button', { name: 'Cancel' }).click();

  // Take snapshot… from the top of the page: its form is scrolled to and its name field focused.
  await page.getByTestId('take').click();
  const name = page.getByLabel('Name', { exact: true });
  await name.waitFor();
  await inView(page, name, 'the Name field');
  assert.ok(await name.evaluate((el) => el === document.activeElement), 'the Name field has the focus');

  for (const size of [{ width: 1280, height: 800 }, { width: 800, height: 600 }]) {
    await page.setViewportSize(size);
    await page.waitForTimeout(50);
    assert.deepEqual(await layoutDefects(page), [], `at ${size.width}×${size.height}`);
    await page.screenshot({ path: join(SHOTS, `snapshots-1000-${size.width}.png`) });
  }
  await page.setViewportSize({ width: 1280, height: 800 });
});
