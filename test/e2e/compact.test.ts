/**
 * The Compact wizard, clicked through in Chromium against the browser host: a qcow2 holding an ext4 whose
 * 40 MiB file was deleted (debugfs) is previewed (per partition, nothing written), then compacted in place
 * keeping a copy. The preview's figure is the one the result gives back, the file shrinks on the host by about
 * that much, qemu-img check is clean, the kept copy is the image as it was, and e2fsck finds the file system
 * clean with the kept file intact. Screenshots at 1280×800 go to test-results/e2e.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { must, run } from '../helpers';
import { SHOTS, e2eSession } from './browser';

const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
const session = e2eSession('dw-e2e-compact-');
const MiB = 1 << 20;

test('Compact: the preview says what in-place compaction then gives back; a copy is kept and the image checks clean', async () => {
  const tree = session.work.path('tree');
  mkdirSync(tree);
  const keep = Buffer.alloc(2 * MiB);
  for (let i = 0; i < keep.length; i += 4) keep.writeUInt32LE((Math.imul(i + 7, 2654435761) ^ (i >>> 5)) >>> 0, i);
  writeFileSync(join(tree, 'keep.bin'), keep);
  const big = Buffer.alloc(40 * MiB);
  for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((Math.imul(i + 3, 2246822519) ^ (i >>> 7)) >>> 0, i);
  writeFileSync(join(tree, 'big.bin'), big);
  const raw = session.work.path('disk.raw');
  must('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', '4096', '-d', tree, raw, '64M']);
  must('debugfs', ['-w', '-R', 'rm /big.bin', raw]);
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
