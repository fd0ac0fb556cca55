/**
 * The Compact wizard, clicked through in Chromium against the browser host: a qcow2 holding an ext4 whose
 * 40 MiB file was deleted (debugfs) is previewed (per partition, nothing written), then compacted in place
 * keeping a copy. The preview's figure is the one the result gives back, the file shrinks on the host by about
 * that much, qemu-img check is clean, the kept copy is the image as it was, and e2fsck finds the file system
 * clean with the kept file intact. Then "into a new image": the preview's map colours the deleted file's data as
 * "free in the file system" (read back from the canvas: as many cells as the deleted file fills, inside the file
 * system, the legend's figure the heading's), the new image gives back what the preview said, checks clean by
 * qemu-img, and reads as the source outside dumpe2fs's free blocks (zeros inside them); the source is only read.
 * Screenshots at 1280×800 go to test-results/e2e.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { must, run } from '../helpers';
import { dumpe2fs } from '../interop/inside-common';
import { assertKeptAndZeroed } from '../interop/sparsify-common';
import { e2eSession, SHOTS, test } from './browser';
import { layoutDefects } from './layout';

/** The map's grid and the light theme's "free in the file system" colour (src-renderer/mapPalette.ts, tokens.css). */
const GRID = { columns: 64, cell: 10, gap: 2, pitch: 12, pad: 2 };
const FREE_IN_FS = [0xd4, 0xa2, 0x1c] as const;

const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
const session = e2eSession('dw-e2e-compact-');
const MiB = 1 << 20;

/** An ext4 (64 MiB) that held a 40 MiB file, deleted by debugfs, as raw; returns the kept file. */
function ext4Disk(raw: string, tree: string): Buffer {
  mkdirSync(tree);
  const keep = Buffer.alloc(2 * MiB);
  for (let i = 0; i < keep.length; i += 4) keep.writeUInt32LE((Math.imul(i + 7, 2654435761) ^ (i >>> 5)) >>> 0, i);
  writeFileSync(join(tree, 'keep.bin'), keep);
  const big = Buffer.alloc(40 * MiB);
  for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((Math.imul(i + 3, 2246822519) ^ (i >>> 7)) >>> 0, i);
  writeFileSync(join(tree, 'big.bin'), big);
  must('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', '4096', '-d', tree, raw, '64M']);
  must('debugfs', ['-w', '-R', 'rm /big.bin', raw]);
  return keep;
}

test('Compact: the preview says what in-place compaction then gives back; a copy is kept and the image checks clean', async () => {
  const raw = session.work.path('disk.raw');
  const keep = ext4Disk(raw, session.work.path('tree'));
  const img = session.work.path('disk.qcow2');
  must('qemu-img', ['convert', '-O', 'qcow2', raw, img]);
  const before = sha(img);
  const sizeBefore = statSync(img).blocks * 512;
  const cli = JSON.parse(must(process.execPath, [join(__dirname, '..', '..', 'bin', 'diskwright.js'), 'sparsify', '--dry-run', '--output', 'json', img]).stdout);

  const { page } = session.browser;
  await page.goto(session.host.url);
  await page.getByLabel('Image path').fill(img);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  await page.getByRole('heading', { name: 'disk.qcow2', level: 1 }).waitFor();
  await page.getByTestId('open-compact').click();

  const preview = page.getByTestId('compact-preview');
  await preview.waitFor({ timeout: 30_000 });
  const heading = (await page.getByTestId('compact-would-give').innerText()).trim();
  const m = /^About (.+) can be given back$/.exec(heading);
  assert.ok(m, heading);
  const rows = await page.getByTestId('compact-partitions').locator('tbody tr').allInnerTexts();
  assert.match(rows[0], /Whole disk \(ext4\)/);
  // The figures are a table: a header row above one row per partition, three cells each.
  const table = page.getByTestId('compact-partitions');
  const headBox = (await table.locator('thead tr').boundingBox())!;
  const rowBox = (await table.locator('tbody tr').first().boundingBox())!;
  assert.ok(rowBox.y >= headBox.y + headBox.height - 1, 'the partition row lies below the header row');
  assert.equal(await table.locator('tbody tr').first().locator('td').count(), 3);
  assert.match(rows[0], new RegExp(`${m[1].replace('.', '\\.')}$`), 'the row gives back what the heading says');
  assert.equal(sha(img), before, 'the preview wrote nothing');
  assert.equal(await page.getByLabel('Keep a copy of the image as it was, beside it').isChecked(), true);
  await page.screenshot({ path: join(SHOTS, 'compact-preview-1280.png'), fullPage: true });

  await page.getByRole('button', { name: 'Compact', exact: true }).click();
  const result = page.getByTestId('compact-result');
  await result.waitFor({ timeout: 60_000 });
  const given = (await page.getByTestId('compact-given').innerText()).trim();
  assert.equal(given, `Given back: ${m[1]}`, 'the result gives back what the preview said');
  assert.match(await page.getByTestId('compact-verify').innerText(), /no damage and no leaked space/);
  for (const note of await result.locator('p.help').allInnerTexts()) assert.match(note, /^[A-Z]/, `a sentence: ${note}`);
  const kept = (await page.getByTestId('kept-copy').locator('code').innerText()).trim();
  await page.screenshot({ path: join(SHOTS, 'compact-result-1280.png'), fullPage: true });

  assert.ok(cli.reclaimBytes >= 40 * MiB, `the CLI's preview agrees: ${cli.reclaimBytes}`);
  assert.equal(run('qemu-img', ['check', img]).status, 0, 'qemu-img check of the compacted image is clean');
  const sizeAfter = statSync(img).blocks * 512;
  assert.ok(sizeBefore - sizeAfter >= 38 * MiB, `the file gave back the space: ${sizeBefore} → ${sizeAfter}`);
  assert.equal(sha(kept), before, 'the kept copy is the image as it was');
  const back = session.work.path('back.raw');
  must('qemu-img', ['convert', '-O', 'raw', img, back]);
  assert.equal(run('e2fsck', ['-fn', back]).status, 0, 'e2fsck -fn is clean');
  const out = session.work.path('keep.out');
  must('debugfs', ['-R', `dump /keep.bin ${out}`, back]);
  assert.ok(readFileSync(out).equals(keep), 'the kept file is intact');
  assert.deepEqual(readdirSync(session.work.dir).filter((n) => n.startsWith('.')), [], 'no temporary file left');

  await page.getByRole('button', { name: 'Back to the image' }).click();
  await page.getByRole('heading', { name: 'disk.qcow2', level: 1 }).waitFor();
  assert.deepEqual(session.browser.problems, []);
});

test('Compact into a new image: the map colours what is given back, the new image gives back what the preview said, checks clean and reads as the source where the file system holds data', async () => {
  const raw = session.work.path('second.raw');
  const keep = ext4Disk(raw, session.work.path('tree2'));
  const img = session.work.path('second.qcow2');
  must('qemu-img', ['convert', '-O', 'qcow2', raw, img]);
  const before = sha(img);

  const { page } = session.browser;
  await page.goto(session.host.url);
  await page.getByLabel('Image path').fill(img);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  await page.getByRole('heading', { name: 'second.qcow2', level: 1 }).waitFor();
  await page.getByTestId('open-compact').click();
  await page.getByTestId('compact-preview').waitFor({ timeout: 30_000 });
  const m = /^About (.+) can be given back$/.exec((await page.getByTestId('compact-would-give').innerText()).trim());
  assert.ok(m);

  // The map: data / free in the file system / already free, the middle one the figure the heading gives.
  const map = page.getByTestId('compact-map');
  await map.locator('.legend-item[data-kind="freeInFs"]').waitFor({ timeout: 30_000 });
  const legend = await map.locator('.legend-item').evaluateAll((els) => els.map((e) => [e.getAttribute('data-kind'), e.querySelector('.legend-label')!.textContent!.trim(), e.querySelector('.legend-bytes')!.textContent!.trim()]));
  const labels = Object.fromEntries(legend.map(([kind, label]) => [kind, label]));
  assert.equal(labels.data, 'Data');
  assert.equal(labels.freeInFs, 'Free in the file system');
  assert.match(labels.zero ?? labels.unallocated ?? '', /^Already free/);
  const freeBytes = legend.find(([kind]) => kind === 'freeInFs')![2];
  assert.equal(freeBytes, m[1], 'the map gives back what the heading says');
  const cells = (await map.getByTestId('allocation-map').evaluate(
    `(() => {
      const el = document.querySelector('[data-testid="compact-map"] [data-testid="allocation-map"]');
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
  )) as number[];
  // 64 MiB in 1,024 cells: 64 KiB each; the deleted 40 MiB colours at least 640 of them, and the cells coloured
  // cover no more than dumpe2fs's free blocks do.
  const d = dumpe2fs(raw);
  const freeCells = new Set<number>();
  for (const r of d.free) for (let c = Math.floor(r.start / (64 * 1024)); c * 64 * 1024 < r.start + r.length; c++) freeCells.add(c);
  assert.ok(cells.length >= 640, `${cells.length} cells coloured free in the file system`);
  assert.deepEqual(cells.filter((c) => !freeCells.has(c)), [], 'every coloured cell lies where dumpe2fs lists free blocks');
  await page.screenshot({ path: join(SHOTS, 'compact-map-1280.png'), fullPage: true });
  // What the screenshot showed wrong last round: the map and legend 90 px short of the card, one legend title in
  // normal weight, shares side by side without saying of what. Now: both span the card's content, one weight,
  // and every figure names its whole.
  const spans = (await page.evaluate(`(() => {
    const card = document.querySelector('[data-testid="compact-preview"]');
    const st = getComputedStyle(card);
    const right = card.getBoundingClientRect().right - parseFloat(st.paddingRight) - parseFloat(st.borderRightWidth);
    const gap = (sel) => right - card.querySelector(sel).getBoundingClientRect().right;
    return { canvas: gap('[data-testid="allocation-map"]'), legend: gap('.legend') };
  })()`)) as { canvas: number; legend: number };
  assert.ok(Math.abs(spans.canvas) <= 2 && Math.abs(spans.legend) <= 2, `the map and its legend reach the card's right edge: ${JSON.stringify(spans)}`);
  const weights = await map.locator('.legend-label').evaluateAll((els) => els.map((e) => getComputedStyle(e).fontWeight));
  assert.equal(new Set(weights).size, 1, `one weight for the legend's titles: ${weights.join(', ')}`);
  for (const figure of await map.locator('.legend-figure').allInnerTexts()) assert.match(figure, /^≈?[\d.]+ (bytes|KiB|MiB) of 64 MiB \((?:\d+\.\d|<0\.1|>99\.9)%\)$/, figure);
  assert.match(await map.locator('.legend-item[data-kind="freeInFs"] .legend-note').innerText(), /^part of the data/);
  assert.deepEqual(await layoutDefects(page), [], 'the layout audit finds nothing on the preview');

  await page.getByLabel('Into a new image').check();
  const target = session.work.path('second.compact.qcow2');
  assert.equal(await page.getByRole('textbox', { name: 'New image' }).inputValue(), target, 'the new image is named beside the source');
  await page.getByRole('button', { name: 'Compact', exact: true }).click();
  await page.getByTestId('compact-result').waitFor({ timeout: 60_000 });
  assert.equal((await page.getByTestId('compact-given').innerText()).trim(), `Given back: ${m[1]}`, 'the result gives back what the preview said');
  assert.match(await page.getByTestId('compact-verify').innerText(), /no damage and no leaked space/);
  assert.match(await page.getByTestId('compact-sizes').innerText(), /second\.compact\.qcow2 takes/);
  await page.screenshot({ path: join(SHOTS, 'compact-new-result-1280.png'), fullPage: true });

  assert.equal(sha(img), before, 'the source is only read');
  assert.equal(run('qemu-img', ['check', target]).status, 0, 'qemu-img check of the new image is clean');
  const back = session.work.path('second-back.raw');
  must('qemu-img', ['convert', '-O', 'raw', target, back]);
  const held = assertKeptAndZeroed(raw, back, d.free);
  assert.ok(held >= 40 * MiB, 'the deleted file lay in the free blocks');
  assert.equal(run('e2fsck', ['-fn', back]).status, 0, 'e2fsck -fn is clean');
  const out = session.work.path('keep2.out');
  must('debugfs', ['-R', `dump /keep.bin ${out}`, back]);
  assert.ok(readFileSync(out).equals(keep), 'the kept file is intact');
  assert.ok(statSync(img).blocks * 512 - statSync(target).blocks * 512 >= 38 * MiB, 'the new image is smaller by the freed space');
  assert.deepEqual(session.browser.problems, []);
});

test('Compact of a differencing VHD: in place is not offered (the reason shown), into a new image is chosen; the preview writes nothing', async () => {
  const base = session.work.path('vhd-base.vhd');
  must('qemu-img', ['create', '-q', '-f', 'vpc', base, '16M']);
  const child = session.work.path('vhd-diff.vhd');
  // qemu-img makes no VHD over a parent: ours does.
  must(process.execPath, [join(__dirname, '..', '..', 'bin', 'diskwright.js'), 'create', '-f', 'vpc', '-b', 'vhd-base.vhd', '-F', 'vpc', child]);
  const before = sha(child);
  const cli = JSON.parse(must(process.execPath, [join(__dirname, '..', '..', 'bin', 'diskwright.js'), 'sparsify', '--dry-run', '--in-place', '--output', 'json', child]).stdout);

  const { page } = session.browser;
  await page.goto(session.host.url);
  await page.getByLabel('Image path').fill(child);
  await page.getByRole('button', { name: 'Compact…', exact: true }).click();
  await page.getByTestId('compact-preview').waitFor({ timeout: 30_000 });
  const inPlace = page.getByRole('radio', { name: 'In place' });
  assert.equal(await inPlace.isDisabled(), true, 'in place cannot be chosen');
  assert.equal(await page.getByRole('radio', { name: 'Into a new image' }).isChecked(), true, 'into a new image is chosen');
  const reason = (await page.getByTestId('in-place-refused').innerText()).trim();
  assert.equal(reason, `Not possible in place: ${cli.inPlaceRefusal}.`, 'the reason is the one the CLI\'s dry run gives');
  assert.match(reason, /a differencing VHD cannot release blocks/);
  assert.equal(await inPlace.getAttribute('aria-describedby'), 'in-place-refused', 'the reason is read with the choice');
  assert.equal(await page.getByRole('textbox', { name: 'New image' }).inputValue(), session.work.path('vhd-diff.compact.vhd'));
  // Seen in this screenshot before: the name's field 160 px wide beside its label, an empty table of figures.
  const field = (await page.evaluate(`(() => {
    const set = document.querySelector('.repair-choice');
    const st = getComputedStyle(set);
    const right = set.getBoundingClientRect().right - parseFloat(st.paddingRight) - parseFloat(st.borderRightWidth);
    const input = document.getElementById('compact-target').getBoundingClientRect();
    const label = document.querySelector('label[for="compact-target"]').getBoundingClientRect();
    return { short: right - input.right, below: input.top >= label.bottom - 1 };
  })()`)) as { short: number; below: boolean };
  assert.ok(Math.abs(field.short) <= 2 && field.below, `the new image's field spans the choice, under its label: ${JSON.stringify(field)}`);
  assert.equal(await page.getByTestId('compact-partitions').count(), 0, 'no table of figures without a partition or file system');
  await page.screenshot({ path: join(SHOTS, 'compact-refused-1280.png'), fullPage: true });
  assert.deepEqual(await layoutDefects(page), []);
  assert.equal(sha(child), before, 'the preview wrote nothing');
  assert.deepEqual(session.browser.problems, []);
});
