/**
 * Inside the disk, in the app (issue 22): a GPT qcow2 holding ext4, FAT and NTFS (built by sgdisk, mke2fs -d,
 * mkfs.vfat + mcopy, mkfs.ntfs + ntfscp, qemu-img convert) opened on Inspect shows the Partitions card (what
 * sfdisk and blkid say), the partition bar over the allocation map lined up with its cells, a file browser that
 * lists folders as they were put in, sorts, shows a symlink's target, saves a file out byte for byte, cancels a
 * folder copy leaving nothing, and the map's "free in the file system" colour where a deleted file's data lies.
 */
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import AxeBuilder from '@axe-core/playwright';
import type { Page } from 'playwright';
import { e2eSession, SHOTS, test } from './browser';
import { blkid, sfdiskPartitions } from '../interop/inside-common';
import { buildAppDisk, type AppDisk } from '../interop/inside-app-disk';
import { must } from '../helpers';

/** The map's grid and the "free in the file system" colour (src-renderer/mapPalette.ts). */
const GRID = { columns: 64, cell: 10, gap: 2, pitch: 12, pad: 2 };
const GRID_WIDTH = GRID.columns * GRID.pitch - GRID.gap;
const FREE_IN_FS = [0xd4, 0xa2, 0x1c] as const;

const session = e2eSession('dw-e2e-inside-');
let disk: AppDisk;

async function openInspect(page: Page, path: string, format?: string): Promise<void> {
  await page.goto('about:blank');
  await page.goto(`${session.host.url}#/inspect?${format ? `format=${format}&` : ''}path=${encodeURIComponent(path)}`);
  await page.getByTestId('partitions-card').waitFor();
  await page.getByTestId('partition-row').first().waitFor();
  await page.getByTestId('allocation-map').waitFor();
}

/** The rows of the file table, as [name, type] in the order shown. */
async function rows(page: Page): Promise<Array<[string, string]>> {
  await page.getByTestId('files').waitFor();
  return page.getByTestId('file-row').evaluateAll((els) => els.map((e) => [e.getAttribute('data-name') ?? '', e.getAttribute('data-type') ?? ''] as [string, string]));
}

async function box(page: Page, selector: string) {
  const b = await page.locator(selector).first().boundingBox();
  assert.ok(b, `${selector} is laid out`);
  return b;
}

test('the Partitions card and the partition bar say what sfdisk and blkid say, lined up with the map', async () => {
  disk = buildAppDisk(session.work.dir);
  const truth = sfdiskPartitions(disk.raw);
  const { page } = session.browser;
  await openInspect(page, disk.qcow2);

  const card = page.getByTestId('partitions-card');
  assert.match(await page.getByTestId('table-facts').innerText(), /GPT\s+512-byte sectors\s+id 11111111-2222-3333-4444-555555555555\s+3 partitions/);
  const names = { 1: 'Linux filesystem', 2: 'EFI System', 3: 'Microsoft basic data' } as Record<number, string>;
  const fsTypes = { 1: 'ext4', 2: 'vfat', 3: 'ntfs' } as Record<number, string>;
  for (const p of truth.partitions) {
    const row = card.locator(`[data-testid="partition-row"][data-partition="${p.number}"]`);
    const text = await row.innerText();
    const id = blkid(disk.raw, p.start);
    assert.match(text, new RegExp(names[p.number]), `partition ${p.number}: type named as sfdisk names ${p.type}`);
    assert.match(text, new RegExp(`\\b${fsTypes[p.number]}\\b`));
    assert.equal(id.TYPE, fsTypes[p.number]);
    assert.ok(text.includes(`“${id.LABEL}”`), `partition ${p.number}: label ${id.LABEL} in ${text}`);
    assert.ok(text.includes(id.UUID), `partition ${p.number}: UUID ${id.UUID}`);
    assert.ok(text.includes(p.name!), `partition ${p.number}: name ${p.name}`);
    assert.match(text, /of ≈?\d+(\.\d+)? MiB \((?:\d+\.\d|<0\.1|>99\.9)%\)/, 'used of size');
  }
  assert.equal(await card.getByRole('button', { name: /^Browse the files of partition/ }).count(), 3);

  // The bar: exactly as wide as the grid of cells, each segment at its partition's place on the disk.
  const canvas = await box(page, '[data-testid="allocation-map"]');
  const bar = await box(page, '[data-testid="partition-bar"]');
  const gridLeft = canvas.x + GRID.pad;
  assert.ok(Math.abs(bar.x - gridLeft) <= 1 && Math.abs(bar.width - GRID_WIDTH) <= 1, `bar ${JSON.stringify(bar)} spans the grid from ${gridLeft}, ${GRID_WIDTH} px`);
  assert.ok(bar.y + bar.height <= canvas.y && canvas.y - (bar.y + bar.height) < 12, 'the bar sits right over the map');
  const size = Number(must('qemu-img', ['info', '--output=json', disk.qcow2]).stdout.match(/"virtual-size": (\d+)/)![1]);
  for (const p of truth.partitions) {
    const seg = await box(page, `[data-testid="partition-segment"][data-partition="${p.number}"]`);
    const left = gridLeft + (p.start / size) * GRID_WIDTH;
    const width = (p.size / size) * GRID_WIDTH;
    assert.ok(Math.abs(seg.x - left) <= 2 && Math.abs(seg.width - width) <= 2, `segment ${p.number} at ${seg.x}+${seg.width}, its partition at ${left.toFixed(1)}+${width.toFixed(1)}`);
  }

  // Pointing at a segment outlines its partition's cells on the map: the first box starts at the cell holding its first byte.
  const bucketSize = Math.ceil(size / 1024);
  for (const p of truth.partitions) {
    await page.locator(`[data-testid="partition-segment"][data-partition="${p.number}"]`).hover();
    const cells = page.locator(`[data-testid="partition-cells"][data-partition="${p.number}"]`);
    await cells.first().waitFor();
    const first = Math.floor(p.start / bucketSize);
    const last = Math.floor((p.start + p.size - 1) / bucketSize);
    const firstBox = (await cells.first().boundingBox())!;
    const cellX = canvas.x + GRID.pad + (first % GRID.columns) * GRID.pitch;
    const cellY = canvas.y + GRID.pad + Math.floor(first / GRID.columns) * GRID.pitch;
    assert.ok(Math.abs(firstBox.x + GRID.gap - cellX) <= 1 && Math.abs(firstBox.y + GRID.gap - cellY) <= 1, `partition ${p.number}: outline at ${firstBox.x},${firstBox.y}, its first cell at ${cellX},${cellY}`);
    assert.equal(await cells.count(), Math.floor(last / GRID.columns) - Math.floor(first / GRID.columns) + 1, `partition ${p.number}: one outline per row of cells`);
  }
  await page.screenshot({ path: join(SHOTS, 'inside-card.png'), fullPage: true });
  assert.deepEqual(session.browser.problems, []);
});

test('the file browser lists folders as they were put in, sorts, shows symlinks and saves a file out byte for byte', async () => {
  const { page } = session.browser;
  await openInspect(page, disk.qcow2);
  await page.getByRole('button', { name: 'Browse the files of partition 1' }).click();
  await page.getByTestId('inside-browser').waitFor();

  // Folders first, then files; the deleted scratch.bin is gone; mke2fs added lost+found.
  const put = readdirSync(disk.extTree).filter((n) => n !== 'scratch.bin');
  const root = await rows(page);
  const expectDirs = [...put.filter((n) => ['big', 'docs'].includes(n)), 'lost+found'].sort();
  const expectFiles = put.filter((n) => !['big', 'docs'].includes(n)).sort();
  assert.deepEqual(root.map(([n]) => n), [...expectDirs, ...expectFiles]);
  assert.deepEqual(root.find(([n]) => n === 'link-to-readme'), ['link-to-readme', 'symlink']);
  assert.equal((await page.locator('[data-name="link-to-readme"] [data-testid="link-target"]').innerText()).trim(), '→ docs/readme.txt');
  // A symlink is not something to open or save.
  assert.equal(await page.locator('[data-name="link-to-readme"] button').count(), 0);

  await page.getByRole('button', { name: 'docs', exact: true }).click();
  await page.locator('[data-testid="breadcrumbs"] [aria-current="location"]', { hasText: 'docs' }).waitFor();
  assert.deepEqual((await rows(page)).map(([n]) => n), ['notes', 'readme.txt', 'report.bin', 'Zeta small.txt']);
  await page.locator('button[data-sort="size"]').click();
  await page.waitForFunction(() => document.querySelector('th[aria-sort="ascending"] [data-sort="size"]') !== null);
  assert.deepEqual((await rows(page)).map(([n]) => n), ['notes', 'Zeta small.txt', 'readme.txt', 'report.bin']);
  await page.locator('button[data-sort="size"]').click();
  await page.waitForFunction(() => document.querySelector('th[aria-sort="descending"] [data-sort="size"]') !== null);
  assert.deepEqual((await rows(page)).map(([n]) => n), ['notes', 'report.bin', 'readme.txt', 'Zeta small.txt'], 'folders stay first either way');
  const shownSize = await page.locator('[data-name="report.bin"] .col-size').getAttribute('data-bytes');
  assert.equal(Number(shownSize), readFileSync(join(disk.extTree, 'docs', 'report.bin')).length);

  // Save a copy of a file: the name is asked first (beside the image by default), then the job runs.
  await page.getByRole('button', { name: 'Save a copy of report.bin…' }).click();
  const field = page.getByLabel('Save as');
  assert.equal(await field.inputValue(), join(session.work.dir, 'report.bin'));
  const out = session.work.path('saved-report.bin');
  await field.fill(out);
  await field.blur();
  await page.getByTestId('save-copy').click();
  await page.getByTestId('copy-done').waitFor();
  assert.ok(readFileSync(out).equals(readFileSync(join(disk.extTree, 'docs', 'report.bin'))), 'the saved file equals the one put in');

  // Up by the breadcrumb, then another file system: NTFS.
  await page.getByRole('button', { name: 'Done' }).click();
  await page.locator('[data-testid="breadcrumbs"]').getByRole('button', { name: 'Partition 1' }).click();
  await page.locator('[data-testid="breadcrumbs"] [aria-current="location"]', { hasText: 'Partition 1' }).waitFor();
  await page.getByRole('button', { name: 'Browse the files of partition 3' }).click();
  await page.getByRole('heading', { name: /Files in partition 3/ }).waitFor();
  assert.ok((await rows(page)).some(([n, t]) => n === 'payload.bin' && t === 'file'));
  await page.getByRole('button', { name: 'Save a copy of payload.bin…' }).click();
  const ntfsOut = session.work.path('saved-payload.bin');
  await page.getByLabel('Save as').fill(ntfsOut);
  await page.getByLabel('Save as').blur();
  await page.getByTestId('save-copy').click();
  await page.getByTestId('copy-done').waitFor();
  assert.ok(readFileSync(ntfsOut).equals(readFileSync(disk.ntfsFile)), 'the file put in by ntfscp comes out the same');

  // FAT: the folder mcopy put in.
  await page.getByRole('button', { name: 'Done' }).click();
  await page.getByRole('button', { name: 'Browse the files of partition 2' }).click();
  await page.getByRole('heading', { name: /Files in partition 2/ }).waitFor();
  assert.deepEqual((await rows(page)).map(([n]) => n), ['EFI', 'startup.nsh']);
  await page.screenshot({ path: join(SHOTS, 'inside-browser.png'), fullPage: true });
  // The card, the bar and the browser pass axe-core's rules (names, roles, contrast).
  const audit = await new AxeBuilder({ page }).include('[data-testid="partitions-card"]').include('[data-testid="partition-bar"]').analyze();
  assert.deepEqual(audit.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`), []);
  assert.deepEqual(session.browser.problems, []);
});

test('a folder copy cancelled with Cancel leaves no target and no temporary', async () => {
  const { page } = session.browser;
  await openInspect(page, disk.qcow2);
  await page.getByRole('button', { name: 'Browse the files of partition 1' }).click();
  const target = session.work.path('big-copy');
  // The 96 MiB copy can end before the click lands (seen once in a full run: "Saved: ... 24 files" where Cancel
  // had been): then the copy is removed and started again, up to five times, so that a cancel is what is tested.
  for (let attempt = 1; ; attempt++) {
    await page.getByRole('button', { name: 'Save a copy of big…' }).click();
    await page.getByLabel('Save as').fill(target);
    await page.getByLabel('Save as').blur();
    await page.getByTestId('save-copy').click();
    const cancelled = await page
      .getByRole('button', { name: 'Cancel' })
      .click({ timeout: 5_000 })
      .then(() => true, () => false);
    if (cancelled) break;
    await page.getByTestId('copy-done').waitFor({ timeout: 1_000 });
    assert.ok(attempt < 5, 'the copy ended before Cancel could be clicked, five times');
    rmSync(target, { recursive: true, force: true });
    await page.getByRole('button', { name: 'Done' }).click();
  }
  await page.getByTestId('copy-cancelled').waitFor();
  assert.equal(existsSync(target), false, 'no target');
  assert.deepEqual(readdirSync(session.work.dir).filter((n) => n.includes('big-copy')), [], 'no temporary beside it');
  // The panel is back at choosing the name, ready to try again.
  assert.equal(await page.getByLabel('Save as').inputValue(), target);
});

test('the map colours the image’s data that the file system marks free (a deleted file)', async () => {
  const { page } = session.browser;
  await openInspect(page, disk.qcow2);
  await page.getByTestId('show-free').check();
  await page.getByTestId('free-summary').waitFor();
  await page.locator('.legend-item[data-kind="freeInFs"]').waitFor();
  // Which cells hold the colour: read back from the canvas, cell by cell (the bottom row of each cell's pixels).
  const cells = await page.getByTestId('allocation-map').evaluate(
    `(() => {
      const el = document.querySelector('[data-testid="allocation-map"]');
      const ctx = el.getContext('2d');
      const dpr = el.width / ${GRID.columns * GRID.pitch - GRID.gap + 2 * GRID.pad};
      const px = ctx.getImageData(0, 0, el.width, el.height).data;
      const found = [];
      for (let i = 0; i < 1024; i++) {
        const x0 = ${GRID.pad} + (i % ${GRID.columns}) * ${GRID.pitch};
        const y0 = ${GRID.pad} + Math.floor(i / ${GRID.columns}) * ${GRID.pitch};
        let hit = false;
        for (let y = y0; y < y0 + ${GRID.cell} && !hit; y++) for (let x = x0; x < x0 + ${GRID.cell} && !hit; x++) {
          const o = (Math.floor(y * dpr) * el.width + Math.floor(x * dpr)) * 4;
          if (px[o] === ${FREE_IN_FS[0]} && px[o + 1] === ${FREE_IN_FS[1]} && px[o + 2] === ${FREE_IN_FS[2]}) hit = true;
        }
        if (hit) found.push(i);
      }
      return found;
    })()`,
  );
  const found = cells as number[];
  const size = readFileSync(disk.raw).length;
  const bucketSize = Math.ceil(size / 1024);
  const ext = disk.parts[0];
  // The deleted file's 8 MiB: at least that many cells' worth inside the ext4 partition, and most of the coloured
  // cells. Elsewhere a few: qcow2 clusters that hold some file system data and some free space (the exact bytes
  // are held to dumpe2fs and qemu-img map in test/interop/inside-app-api.test.ts).
  const inExt = found.filter((i) => i * bucketSize < ext.start + ext.size && (i + 1) * bucketSize > ext.start);
  assert.ok(inExt.length * bucketSize >= 8 << 20, `${inExt.length} cells coloured in partition 1`);
  assert.ok(inExt.length >= 0.8 * found.length, `${found.length - inExt.length} of ${found.length} coloured cells lie outside partition 1`);
  assert.match(await page.getByTestId('free-summary').innerText(), /^≈?\d+(\.\d+)? MiB of the image's data lies in space its file systems mark free/);
  await page.screenshot({ path: join(SHOTS, 'inside-free.png'), fullPage: true });
});

test('at 800×600 nothing overflows the page, and a damaged primary GPT is said plainly', async () => {
  const { page } = session.browser;
  await page.setViewportSize({ width: 800, height: 600 });
  try {
    await openInspect(page, disk.qcow2);
    await page.getByRole('button', { name: 'Browse the files of partition 1' }).click();
    await page.getByTestId('files').waitFor();
    const overflow = await page.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth');
    await page.screenshot({ path: join(SHOTS, 'inside-800.png'), fullPage: true });
    assert.equal(overflow, 0, 'no horizontal scroll of the page');
    // The bar scrolls with the map inside its frame: still lined up.
    const canvas = await box(page, '[data-testid="allocation-map"]');
    const bar = await box(page, '[data-testid="partition-bar"]');
    assert.ok(Math.abs(bar.x - (canvas.x + GRID.pad)) <= 1);

    // A primary GPT header broken: read from the backup, and the card says so.
    const damaged = session.work.path('damaged.raw');
    must('cp', ['--sparse=always', disk.raw, damaged]);
    // Four bytes of the primary header's fields changed: its CRC no longer matches (as sgdisk -v says).
    const fd = openSync(damaged, 'r+');
    writeSync(fd, Buffer.from([0xde, 0xad, 0xbe, 0xef]), 0, 4, 512 + 40);
    closeSync(fd);
    assert.match(must('sgdisk', ['-v', damaged]).stdout + '', /corrupt|invalid|CRC/i, 'sgdisk sees the damage');
    await openInspect(page, damaged, 'raw');
    const findings = page.getByTestId('findings');
    await findings.waitFor();
    assert.match(await findings.innerText(), /Problem: the primary GPT header is damaged .*; the table was read from the backup/);
    assert.equal(await page.getByTestId('partition-row').count(), 3, 'the partitions are read from the backup');
    await page.screenshot({ path: join(SHOTS, 'inside-damaged.png'), fullPage: true });
  } finally {
    await page.setViewportSize({ width: 1280, height: 800 });
  }
  assert.deepEqual(session.browser.problems, []);
});
