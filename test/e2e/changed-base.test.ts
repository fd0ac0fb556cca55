/**
 * A UML COW file whose backing file changed after it was made (its recorded date no longer matches, so UML and
 * uml_moo refuse the pair): the Inspect page says so and offers to accept the changed base; after that the
 * recorded date and size are the base's again, uml_moo merges the pair, and its merge is what diskwright reads.
 */
import assert from 'node:assert/strict';
import { readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dwOk, must, run } from '../helpers';
import { e2eSession, SHOTS, test } from './browser';
import { toneOf } from './tones';

const session = e2eSession('dw-e2e-changed-base-');

test('a COW file whose base changed is accepted by clicking, and uml_moo takes the pair again', async () => {
  const base = session.work.path('base.raw');
  writeFileSync(base, Buffer.alloc(4 * 1024 * 1024, 0x41));
  const cow = session.work.path('disk.cow');
  must('uml_mkcow', ['-f', cow, base]);
  const piece = session.work.path('piece.bin');
  writeFileSync(piece, Buffer.alloc(8192, 0x7e));
  dwOk(['write', cow, '65536', piece]);
  utimesSync(base, new Date('2020-01-01T00:00:00Z'), new Date('2020-01-01T00:00:00Z'));
  assert.notEqual(run('uml_moo', [cow, session.work.path('refused.raw')]).status, 0, 'uml_moo refuses the pair first');

  const { page } = session.browser;
  await page.goto(session.host.url);
  await page.getByLabel('Image path').fill(cow);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  await page.getByRole('heading', { name: 'disk.cow', level: 1 }).waitFor();
  const banner = page.getByTestId('changed-base');
  await banner.waitFor();
  assert.match(await banner.innerText(), /Its base image changed after this image was made from it/);
  await page.screenshot({ path: join(SHOTS, 'changed-base-1280.png'), fullPage: true });
  await page.setViewportSize({ width: 800, height: 600 });
  await page.screenshot({ path: join(SHOTS, 'changed-base-800.png'), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.getByTestId('accept-base').click();
  await page.getByTestId('accepted-base').waitFor({ timeout: 60_000 });
  assert.equal(await toneOf(page, '[data-testid="accepted-base"]'), 'info', 'accepting the base is news, not a warning: the neutral tone');
  await page.getByRole('img', { name: /^Allocation map:/ }).waitFor();
  await banner.waitFor({ state: 'detached' });

  const merged = session.work.path('merged.raw');
  must('uml_moo', [cow, merged]);
  const ours = session.work.path('ours.raw');
  dwOk(['convert', '-O', 'raw', cow, ours]);
  assert.ok(readFileSync(merged).equals(readFileSync(ours)), 'uml_moo\'s merge equals our reading');
  assert.ok(readFileSync(merged).subarray(65536, 65536 + 8192).equals(Buffer.alloc(8192, 0x7e)));
  assert.deepEqual(session.browser.problems, []);
});
