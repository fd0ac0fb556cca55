/**
 * The snapshot browser in Chromium against the browser host, on a qcow2 whose snapshots qemu-img made: a person
 * sees the difference of two snapshots drawn where qemu-io wrote between them, takes a snapshot (qemu-img lists
 * it), deletes one (qemu-img check clean, and the space shown beforehand equals what qemu-img check finds freed
 * when that snapshot's entry alone is dropped from a copy), reverts to an older one keeping the current state
 * (qemu-io reads the old content back), and exports a snapshot through the Convert wizard (equal to qemu-img
 * convert -l). Screenshots at 1280×800 and 800×600 go to test-results/e2e.
 */
import assert from 'node:assert/strict';
import { closeSync, copyFileSync, openSync, readdirSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import type { Page } from 'playwright';
import { must, qemuIo, run } from '../helpers';
import { formatBytes } from '../../src-renderer/text';
import { e2eSession, SHOTS, test } from './browser';

const session = e2eSession('dw-e2e-snap-');
const MiB = 1024 * 1024;

/** Waits until the browser is done reading the image after an action (listing, space, map): qemu may then lock it. */
async function settled(page: Page): Promise<void> {
  await page.getByTestId('timeline').getByText('counting…').first().waitFor({ state: 'detached' });
  await page.getByText('Drawing…').waitFor({ state: 'detached' });
}

async function shots(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `${name}-1280.png`), fullPage: true });
  await page.setViewportSize({ width: 800, height: 600 });
  await page.screenshot({ path: join(SHOTS, `${name}-800.png`), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });
}

function snapshotNames(img: string): string[] {
  const info = JSON.parse(must('qemu-img', ['info', '--output', 'json', img]).stdout);
  return (info.snapshots ?? []).map((s: { name: string }) => s.name);
}

/** What qemu-img check finds freed (clusters left with no reference) when the table's last entry is dropped. */
function freedByDroppingLast(img: string, keep: number): number {
  const copy = session.work.path(`oracle-${Date.now()}.qcow2`);
  copyFileSync(img, copy);
  const fd = openSync(copy, 'r+');
  const b = Buffer.alloc(4);
  b.writeUInt32BE(keep);
  writeSync(fd, b, 0, 4, 60);
  closeSync(fd);
  const r = run('qemu-img', ['check', copy]);
  return (r.stdout + r.stderr).split('\n').filter((l) => /^Leaked cluster \d+ refcount=\d+ reference=0$/.test(l)).length * 65536;
}

/** The colour of one cell of the difference map (64 columns of 12 px pitch). */
async function diffCellColour(page: Page, bucket: number): Promise<string> {
  return page.getByTestId('diff-map').evaluate((el, i) => {
    const c = el as HTMLCanvasElement;
    // The backing store is the drawn size times the device pixel ratio.
    const scale = c.width / 766;
    const x = ((i % 64) * 12 + 5) * scale;
    const y = (Math.floor(i / 64) * 12 + 9) * scale;
    const [r, g, b] = c.getContext('2d')!.getImageData(x, y, 1, 1).data;
    return `#${[r, g, b].map((v) => v.toString(16).padStart(2, '0')).join('')}`;
  }, bucket);
}

test('browse, compare, take, delete, revert and export qcow2 snapshots by clicking', async () => {
  const img = session.work.path('vm.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '64M']);
  qemuIo(img, 'qcow2', ['write -P 0x11 0 8M']);
  must('qemu-img', ['snapshot', '-c', 'installed', img]);
  qemuIo(img, 'qcow2', ['write -P 0x22 24M 4M']);
  must('qemu-img', ['snapshot', '-c', 'configured', img]);
  qemuIo(img, 'qcow2', ['write -P 0x33 24M 4M', 'write -P 0x44 40M 2M']);

  const { page } = session.browser;
  await page.goto(session.host.url);
  await page.getByLabel('Image path').fill(img);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  await page.getByRole('heading', { name: 'vm.qcow2', level: 1 }).waitFor();
  await page.getByTestId('open-snapshots').click();
  await page.getByRole('heading', { name: 'Snapshots of vm.qcow2', level: 1 }).waitFor();
  const timeline = page.getByTestId('timeline');
  await timeline.locator('[data-snapshot="configured"]').waitFor();
  assert.deepEqual(await timeline.locator('.timeline-name').allInnerTexts(), ['installed', 'configured', 'Now']);
  await timeline.getByText(/holds alone \d/).first().waitFor();

  // Two snapshots compared: qemu-io wrote 24–28 MiB between them.
  await timeline.locator('[data-snapshot="installed"]').click();
  await page.locator('[data-compare="configured"]').click();
  await page.getByTestId('diff-summary').waitFor();
  assert.match(await page.getByTestId('diff-summary').innerText(), /^4 MiB differ in 1 range between “installed” and “configured”\.$/);
  await shots(page, 'snapshots-diff');
  const bucket = (24 * MiB) / ((64 * MiB) / 512);
  assert.equal(await diffCellColour(page, bucket), '#d9730d', 'the cell at 24 MiB is drawn as differing');
  assert.equal(await diffCellColour(page, bucket + 31), '#d9730d', 'the cell at 28 MiB − 128 KiB is drawn as differing');
  assert.notEqual(await diffCellColour(page, bucket + 32), '#d9730d', 'the cell at 28 MiB is not');
  assert.notEqual(await diffCellColour(page, 0), '#d9730d', 'the first cell did not change');

  // Take a snapshot: qemu-img lists it.
  await page.getByTestId('take').click();
  await page.getByLabel('Name').fill('before-upgrade');
  await page.getByTestId('confirm-button').click();
  await page.getByTestId('done').getByText('Snapshot “before-upgrade” taken.').waitFor({ timeout: 90_000 });
  await settled(page);
  assert.deepEqual(snapshotNames(img), ['installed', 'configured', 'before-upgrade']);
  must('qemu-img', ['check', img]);

  // Delete "configured": the space shown first is what qemu-img finds freed when only that entry goes.
  await timeline.locator('[data-snapshot="configured"]').click();
  await page.getByTestId('delete').click();
  const frees = page.getByTestId('frees');
  await frees.getByText(/gives back \d/).waitFor();
  const copy = session.work.path('without-last.qcow2');
  copyFileSync(img, copy);
  must('qemu-img', ['snapshot', '-d', 'before-upgrade', copy]); // "configured" is then the table's last entry
  const expected = freedByDroppingLast(copy, 1);
  assert.ok(expected >= 4 * MiB, `the overwritten 4 MiB is held by "configured" alone (${expected})`);
  assert.match(await frees.innerText(), new RegExp(`gives back ${formatBytes(expected).replace('.', '\\.')} `));
  await shots(page, 'snapshots-delete');
  await page.getByTestId('confirm-button').click();
  await page.getByTestId('done').getByText('Snapshot “configured” deleted.').waitFor({ timeout: 90_000 });
  await settled(page);
  assert.deepEqual(snapshotNames(img), ['installed', 'before-upgrade']);
  must('qemu-img', ['check', img]);

  // Revert to "installed", keeping the current state first (the box is on by default).
  await timeline.locator('[data-snapshot="installed"]').click();
  await page.getByTestId('revert').click();
  assert.equal(await page.getByLabel('Keep the current state as a snapshot first').isChecked(), true);
  await page.getByLabel('Its name').fill('kept-before-revert');
  await shots(page, 'snapshots-revert');
  await page.getByTestId('confirm-button').click();
  await page.getByTestId('done').getByText(/Reverted to “installed”\. The state before was kept as “kept-before-revert”\./).waitFor({ timeout: 90_000 });
  await settled(page);
  must('qemu-img', ['check', img]);
  assert.deepEqual(snapshotNames(img), ['installed', 'before-upgrade', 'kept-before-revert']);
  must('qemu-io', ['-r', '-f', 'qcow2', '-c', 'read -P 0x11 0 8M', '-c', 'read -P 0 24M 4M', '-c', 'read -P 0 40M 2M', img]);
  await shots(page, 'snapshots-after-revert');

  // Export "installed" as a raw image through the Convert wizard.
  await timeline.locator('[data-snapshot="installed"]').click();
  await page.getByTestId('export').click();
  await page.getByTestId('export-snapshot').getByText('installed').waitFor();
  await page.locator('.format-choice[data-format="raw"]').click();
  const target = session.work.path('installed.raw');
  await page.getByLabel('Save as').fill(target);
  await page.getByLabel('Save as').blur();
  await page.getByRole('button', { name: 'Review' }).click();
  await page.getByRole('button', { name: 'Convert', exact: true }).click();
  await page.getByTestId('result').waitFor({ timeout: 60_000 });
  const expectRaw = session.work.path('expect.raw');
  must('qemu-img', ['convert', '-O', 'raw', '-l', 'snapshot.name=installed', img, expectRaw]);
  must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', expectRaw, target]);
  assert.deepEqual(readdirSync(session.work.dir).filter((n) => n.startsWith('.')), [], 'no temporary file left');
  assert.deepEqual(session.browser.problems, []);
});

test('an image another program is writing is browsed but not changed', async () => {
  const img = session.work.path('busy.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '16M']);
  must('qemu-img', ['snapshot', '-c', 'only', img]);
  // qemu-io holding the image open stands for a running VM: reading it stays allowed (qemu shares reading),
  // writing it is refused by qemu's lock.
  const holder = spawn('qemu-io', ['-r', '-f', 'qcow2', img], { stdio: ['pipe', 'ignore', 'ignore'] });
  try {
    await new Promise((r) => setTimeout(r, 500));
    const { page } = session.browser;
    await page.goto(session.host.url);
    await page.getByLabel('Image path').fill(img);
    await page.getByRole('button', { name: 'Open', exact: true }).click();
    await page.getByRole('heading', { name: 'busy.qcow2', level: 1 }).waitFor();
    await page.getByTestId('open-snapshots').click();
    await page.getByTestId('refusal').waitFor();
    assert.match(await page.getByTestId('refusal').innerText(), /in use by qemu-io \(pid \d+: qemu-io -r -f qcow2 /);
    assert.equal(await page.getByTestId('take').isDisabled(), true);
    await shots(page, 'snapshots-busy');
  } finally {
    holder.stdin?.end('quit\n');
    await new Promise((r) => holder.once('exit', r));
  }
});
