/**
 * Check & Repair of a Parallels image whose only finding is the in-use mark (qemu-img check: "ERROR image was not
 * closed correctly", exit 2): the page names that finding ("not closed cleanly"), in the warning colour, and does
 * not say "damaged" or "Data at risk"; repairing clears the mark and qemu-img check is clean afterwards.
 */
import assert from 'node:assert/strict';
import { closeSync, openSync, writeSync } from 'node:fs';
import { must, run } from '../helpers';
import { e2eSession, test } from './browser';
import { layoutDefects } from './layout';

const session = e2eSession('dw-e2e-unclean-');

test('a Parallels image left in use is "not closed cleanly", not "damaged", and the repair clears it', async () => {
  const img = session.work.path('inuse.hdd');
  must('qemu-img', ['create', '-q', '-f', 'parallels', img, '16M']);
  const fd = openSync(img, 'r+');
  const mark = Buffer.alloc(4);
  mark.writeUInt32LE(0x746f6e59); // the in-use magic, at the header's inuse field
  writeSync(fd, mark, 0, 4, 44);
  closeSync(fd);
  const oracle = run('qemu-img', ['check', img]);
  assert.equal(oracle.status, 2);
  assert.match(oracle.stdout + oracle.stderr, /ERROR image was not closed correctly/);

  const { page } = session.browser;
  await page.goto(session.host.url);
  await page.getByLabel('Image path').fill(img);
  await page.getByRole('button', { name: 'Check & Repair' }).click();
  const findings = page.getByTestId('findings');
  const heading = findings.getByRole('heading', { level: 2 });
  await heading.waitFor();
  assert.equal((await heading.innerText()).trim(), 'The image was not closed cleanly');
  assert.match((await heading.getAttribute('class')) ?? '', /\bwarn\b/);
  assert.equal(await findings.locator('.finding.bad').count(), 0, 'no alarm box');
  const text = await findings.innerText();
  assert.doesNotMatch(text, /damaged|Data at risk/);
  assert.match(await findings.locator('.finding[data-kind="unclean"]').innerText(), /Not closed cleanly/);
  assert.deepEqual(await layoutDefects(page), []);

  await page.getByRole('button', { name: 'Repair', exact: true }).click();
  await page.getByTestId('result').waitFor();
  assert.equal(run('qemu-img', ['check', img]).status, 0, 'qemu-img check is clean after the repair');
});
