/**
 * A backing file chosen and checked in New Image is trusted on Inspect (issue 25 item 6): the new image opens
 * with its whole chain followed — no question about a backing file outside the folder, no "Not opened" in the
 * chain card, and the map showing the base's data (its share as `qemu-img map` counts it in the base) instead
 * of 100% unallocated. For qcow2 over a qcow2 base, a differencing VHDX over a VHDX and UML COW over a raw
 * disk, each base in a folder of its own. The grant is for that image only: another image over the same base
 * made by qemu-img is still asked about.
 */
import assert from 'node:assert/strict';
import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright';
import { must, qemuIo, run } from '../helpers';
import { e2eSession, SHOTS, test } from './browser';
import { formatPercent } from '../../src-renderer/text';

const session = e2eSession('dw-e2e-newbacking-');

/**
 * The share of the disk `qemu-img map` calls data. qemu's VHDX driver reports no allocation (its map says the
 * whole disk is data), so a VHDX is first copied by qemu-img convert, which leaves out what reads as zeros.
 */
function oracleDataShare(path: string, format: string): number {
  let mapped = path;
  if (format === 'vhdx') {
    mapped = `${path}.oracle.qcow2`;
    must('qemu-img', ['convert', '-f', 'vhdx', '-O', 'qcow2', path, mapped]);
  }
  const entries = JSON.parse(must('qemu-img', ['map', '--output=json', '-f', mapped === path ? format : 'qcow2', mapped]).stdout) as Array<{ length: number; data: boolean }>;
  let data = 0;
  let total = 0;
  for (const e of entries) {
    total += e.length;
    if (e.data) data += e.length;
  }
  return data / total;
}

const percent = formatPercent;

async function makeOver(page: Page, format: string, label: string, base: string, target: string): Promise<void> {
  await page.goto(session.host.url);
  await page.getByRole('button', { name: 'New image…' }).click();
  await page.locator(`.format-choice[data-format="${format}"]`).click();
  await page.getByRole('heading', { name: `${label} image` }).waitFor();
  await page.getByLabel(/^Backing file/).fill(base);
  await page.getByRole('button', { name: 'Check' }).click();
  await page.getByTestId('backing-found').waitFor();
  const saveAs = page.getByLabel('Save as');
  await saveAs.fill(target);
  await saveAs.blur();
  await page.getByText(/free in that folder/).waitFor();
  await page.getByRole('button', { name: 'Review' }).click();
  await page.getByTestId('review').waitFor();
  await page.getByRole('button', { name: 'Create' }).click();
}

const CASES = [
  { format: 'qcow2', label: 'QCOW2', baseFormat: 'qcow2', ext: 'qcow2', baseExt: 'qcow2' },
  { format: 'vhdx', label: 'VHDX', baseFormat: 'vhdx', ext: 'vhdx', baseExt: 'vhdx' },
  { format: 'cow', label: 'UML COW', baseFormat: 'raw', ext: 'cow', baseExt: 'img' },
] as const;

for (const c of CASES) {
  test(`${c.label} over a base in another folder, chosen in New Image: Inspect follows it without asking`, async () => {
    const bases = session.work.path(`${c.format}-bases`);
    const vm = session.work.path(`${c.format}-vm`);
    mkdirSync(bases, { recursive: true });
    mkdirSync(vm, { recursive: true });
    const base = join(bases, `base.${c.baseExt}`);
    must('qemu-img', ['create', '-q', '-f', c.baseFormat, base, '64M']);
    qemuIo(base, c.baseFormat, ['write -P 0x11 0 16M', 'write -P 0x12 40M 8M']);
    const share = oracleDataShare(base, c.baseFormat);
    assert.ok(share > 0.3, `the base holds data: ${share}`);
    const target = join(vm, `over.${c.ext}`);

    const { page } = session.browser;
    await makeOver(page, c.format, c.label, base, target);
    await page.getByRole('heading', { name: `over.${c.ext}`, level: 1 }).waitFor();
    // The map is drawn once the chain is read: its legend shows the base's data through the new, empty image.
    await page
      .waitForFunction(
        (expected) => document.querySelector('.legend-item[data-kind="data"] .legend-percent')?.textContent?.trim() === expected,
        percent(share),
        { timeout: 20_000 },
      )
      .catch(async (err: unknown) => {
        await page.screenshot({ path: join(SHOTS, `new-backing-${c.format}-failed.png`), fullPage: true });
        throw err;
      });
    assert.equal(await page.getByTestId('backing-question').count(), 0, 'no question about the backing file');
    const chain = page.getByRole('list', { name: 'Backing chain' });
    assert.doesNotMatch(await chain.innerText(), /Not opened/);
    assert.equal(await chain.locator('.chain-level').count(), 2);
    assert.match(await chain.locator('.chain-level').nth(1).innerText(), new RegExp(base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    assert.equal(await page.getByTestId('map-cut').count(), 0, 'the map is not cut');
    await page.screenshot({ path: join(SHOTS, `new-backing-${c.format}.png`), fullPage: true });
    assert.deepEqual(session.browser.problems, []);
  });
}

test('the grant is for the image the wizard made only: another overlay of the same base is still asked about', async () => {
  const base = join(session.work.path('qcow2-bases'), 'base.qcow2');
  const other = session.work.path('other-vm');
  mkdirSync(other, { recursive: true });
  const overlay = join(other, 'overlay.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay]);
  const { page } = session.browser;
  await page.goto(session.host.url);
  await page.getByLabel('Image path').fill(overlay);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  await page.getByRole('heading', { name: 'overlay.qcow2', level: 1 }).waitFor();
  await page.getByTestId('backing-question').waitFor();
  assert.deepEqual(session.browser.problems, []);
});

test('a differencing VHDX: New Image says qemu cannot open it before making it (qemu-img indeed cannot)', async () => {
  const base = session.work.path('diff-base.vhdx');
  must('qemu-img', ['create', '-q', '-f', 'vhdx', base, '64M']);
  const target = session.work.path('diff-child.vhdx');
  const { page } = session.browser;
  await page.goto(session.host.url);
  await page.getByRole('button', { name: 'New image…' }).click();
  await page.locator('.format-choice[data-format="vhdx"]').click();
  await page.getByRole('heading', { name: 'VHDX image' }).waitFor();
  assert.equal(await page.getByTestId('qemu-cannot-open').count(), 0, 'a plain VHDX is no matter for the warning');
  await page.getByLabel(/^Backing file/).fill(base);
  await page.getByRole('button', { name: 'Check' }).click();
  await page.getByTestId('backing-found').waitFor();
  assert.match(await page.getByTestId('qemu-cannot-open').innerText(), /qemu and qemu-img cannot open a differencing VHDX/);
  const saveAs = page.getByLabel('Save as');
  await saveAs.fill(target);
  await saveAs.blur();
  await page.getByText(/free in that folder/).waitFor();
  await page.getByRole('button', { name: 'Review' }).click();
  assert.match(await page.getByTestId('review-qemu-cannot-open').innerText(), /cannot open a differencing VHDX/);
  await page.screenshot({ path: join(SHOTS, 'new-vhdx-differencing-review.png'), fullPage: true });
  await page.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('heading', { name: 'diff-child.vhdx', level: 1 }).waitFor();
  const qemu = run('qemu-img', ['info', target]);
  assert.notEqual(qemu.status, 0, 'what the warning says is true of qemu-img');
  assert.deepEqual(session.browser.problems, []);
});

test('UML COW over a 10 GiB base: the space line says what the sparse file takes now, not 10 GiB', async () => {
  const base = session.work.path('big-base.img');
  must('qemu-img', ['create', '-q', '-f', 'raw', base, '10G']);
  const target = session.work.path('big.cow');
  const { page } = session.browser;
  await page.goto(session.host.url);
  await page.getByRole('button', { name: 'New image…' }).click();
  await page.locator('.format-choice[data-format="cow"]').click();
  await page.getByRole('heading', { name: 'UML COW image' }).waitFor();
  await page.getByLabel(/^Backing file/).fill(base);
  await page.getByRole('button', { name: 'Check' }).click();
  await page.getByTestId('backing-found').waitFor();
  const saveAs = page.getByLabel('Save as');
  await saveAs.fill(target);
  await saveAs.blur();
  const help = page.getByTestId('space-help');
  await help.getByText(/now/).waitFor();
  const said = (await help.innerText()).replace(/\s+/g, ' ');
  assert.doesNotMatch(said, /needs 10 GiB now/);
  // The file is the 10 GiB disk plus the COW header and bitmap: not a whole 10 GiB, so "≈".
  const m = /the new file is ≈10 GiB long but sparse: it takes at most ([\d.]+) (bytes|KiB|MiB) now/.exec(said);
  assert.ok(m, said);
  const atMost = Number(m[1]) * { bytes: 1, KiB: 1024, MiB: 1024 * 1024 }[m[2] as 'bytes' | 'KiB' | 'MiB'];
  assert.ok(atMost < 16 * 1024 * 1024, said);
  await page.getByRole('button', { name: 'Review' }).click();
  await page.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('heading', { name: 'big.cow', level: 1 }).waitFor();
  // The file system's count of what the new file takes (st_blocks) is within what was said.
  const taken = statSync(target).blocks * 512;
  assert.ok(taken <= atMost * 1.05 + 4096, `the file takes ${taken} bytes; the wizard said at most ${atMost}`);
  assert.equal(statSync(target).size >= 10 * 2 ** 30, true, 'and it is as long as the disk');
  assert.deepEqual(session.browser.problems, []);
});
