/**
 * Inspect's Partitions card says things once and in the app's words (issue 25):
 * - a disk with no partition table and no file system: one sentence, with the first bytes (as sfdisk and blkid
 *   find nothing there either), not the engine's note followed by the same thing again;
 * - an encrypted image opened without its key: "Unlock the image to see what is inside" with Unlock… there, not
 *   "the partition table could not be read"; Unlock… asks for the passphrase and the card then reads the disk
 *   (an MBR written inside by qemu-io through the key: sfdisk's partition seen through qemu-img's decryption).
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright';
import { must, qemuImgLuks, qemuIo, run } from '../helpers';
import { e2eSession, SHOTS, test } from './browser';

const session = e2eSession('dw-e2e-partcard-');
const PASS = 'correct horse battery staple';

async function openInApp(page: Page, path: string): Promise<void> {
  await page.goto(session.host.url);
  await page.getByLabel('Image path').fill(path);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
}

test('no partition table, no file system: said once, with the bytes the disk starts with (zeros said in words)', async () => {
  const img = session.work.path('plain.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '16M']);
  qemuIo(img, 'qcow2', ['write -P 0x11 0 1M']);
  // The oracles find nothing on it either.
  const raw = session.work.path('plain.raw');
  must('qemu-img', ['convert', '-O', 'raw', img, raw]);
  assert.notEqual(run('sfdisk', ['--json', raw]).status, 0, 'sfdisk finds no table');
  assert.notEqual(run('blkid', ['-p', raw]).status, 0, 'blkid finds no file system');

  const { page } = session.browser;
  await openInApp(page, img);
  const card = page.getByTestId('partitions-card');
  await card.getByTestId('nothing-found').waitFor();
  const text = (await card.innerText()).replace(/\s+/g, ' ');
  assert.equal(text.match(/no partition table/gi)?.length, 2, `the table line and the one sentence: ${text}`);
  assert.match(text, /Nothing on this disk was recognised: no partition table and no file system at its start, which begins with 11 11 11/);
  assert.doesNotMatch(text, /Note:/);
  assert.equal(await card.getByTestId('findings').count(), 0);
  await card.screenshot({ path: join(SHOTS, 'partitions-nothing.png') });

  // A disk whose start was never written: its zeros in words, not a row of 00s.
  const empty = session.work.path('empty-start.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', empty, '16M']);
  qemuIo(empty, 'qcow2', ['write -P 0x11 4M 1M']);
  await openInApp(page, empty);
  await page.getByTestId('partitions-card').getByTestId('nothing-found').waitFor();
  const said = (await page.getByTestId('nothing-found').innerText()).replace(/\s+/g, ' ');
  assert.match(said, /no file system at its start, whose first 32 bytes are zeros\.$/);
  assert.doesNotMatch(said, /00 00/);
  assert.deepEqual(session.browser.problems, []);
});

test('an encrypted image without its key: "Unlock the image to see what is inside", and Unlock… reads it', async () => {
  const secret = session.work.path('secret.txt');
  writeFileSync(secret, PASS);
  const obj = ['--object', `secret,id=s0,file=${secret}`];
  const img = session.work.path('locked.qcow2');
  qemuImgLuks(['create', '-q', '-f', 'qcow2', ...obj, '-o', 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10', img, '32M']);
  // An MBR with one Linux partition, put inside through qemu's decryption.
  const mbr = session.work.path('mbr.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', mbr, '32M']);
  must('sfdisk', ['-q', mbr], { input: Buffer.from('label: dos\nstart=2048, type=83\n') });
  must('qemu-io', [...obj, '--image-opts', `driver=qcow2,file.filename=${img},encrypt.key-secret=s0`, '-c', `write -s ${mbr} 0 512`]);

  const { page } = session.browser;
  await openInApp(page, img);
  const dialog = page.getByRole('dialog', { name: 'Passphrase for locked.qcow2' });
  await dialog.waitFor();
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });
  const card = page.getByTestId('partitions-card');
  const note = card.getByTestId('partitions-locked');
  await note.waitFor();
  assert.match(await note.innerText(), /Unlock the image to see what is inside/);
  assert.doesNotMatch(await card.innerText(), /could not be read/);
  await card.screenshot({ path: join(SHOTS, 'partitions-locked.png') });

  await note.getByRole('button', { name: 'Unlock…' }).click();
  await dialog.waitFor();
  await dialog.getByLabel('Passphrase', { exact: true }).fill(PASS);
  await page.keyboard.press('Enter');
  await dialog.waitFor({ state: 'hidden' });
  await card.getByTestId('table-facts').waitFor();
  const facts = (await card.getByTestId('table-facts').innerText()).replace(/\s+/g, ' ');
  assert.match(facts, /MBR \(DOS\).*1 partition/);
  const sf = JSON.parse(must('sfdisk', ['--json', mbr]).stdout) as { partitiontable: { partitions: Array<{ start: number }> } };
  assert.equal(sf.partitiontable.partitions[0].start, 2048);
  assert.match(await card.getByTestId('partition-row').first().innerText(), /1 MiB/, 'the partition starts where sfdisk put it (sector 2048)');
  assert.deepEqual(session.browser.problems, []);
});
