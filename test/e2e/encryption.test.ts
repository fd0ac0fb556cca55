/**
 * Encryption in the app, in Chromium against the browser host, judged by qemu-img with --object secret:
 * - an encrypted image made by qemu-img opens by typing its passphrase in a real dialog (masked, Show, focus
 *   inside, a wrong passphrase refused in one plain line, Escape keeps the image open without its data); the
 *   map and the LUKS details (key slots) show;
 * - New Image makes a LUKS qcow2 that qemu-img info and check (with the secret) take, and whose data, written
 *   through the app's held key, is not in the file as plain bytes;
 * - Convert copies an encrypted image into a plain one, saying on review that the copy is not encrypted,
 *   verified, and qemu-img compare (with the secret) finds the two identical.
 * The key is held by the main process (here the host runs in this process: keyring.keyFor tells) only while the
 * image is open. Screenshots at 1280×800 and 800×600 are judged by assertion (no horizontal overflow).
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright';
import { AxeBuilder } from '@axe-core/playwright';
import { keyFor } from '../../src-main/keyring';
import { openImage } from '../../src-main/registry';
import { dw, must, qemuImgLuks, run } from '../helpers';
import { e2eSession, SHOTS, test } from './browser';

const session = e2eSession('dw-e2e-enc-');
const PASS = 'purple monkey dishwasher 42';
const secretArgs = (): string[] => {
  const file = session.work.path('secret.txt');
  writeFileSync(file, PASS);
  return ['--object', `secret,id=s0,file=${file}`];
};
const imageOpts = (path: string) => `driver=qcow2,file.filename=${path},encrypt.key-secret=s0`;

function qemuLuksImage(name: string): string {
  const path = session.work.path(name);
  qemuImgLuks(['create', '-q', '-f', 'qcow2', ...secretArgs(), '-o', 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10', path, '32M']);
  must('qemu-io', [...secretArgs(), '--image-opts', imageOpts(path), '-c', 'write -P 0x6b 0 2M', '-c', 'write -P 0x39 20M 1M']);
  return path;
}

async function openInApp(page: Page, path: string): Promise<void> {
  await page.goto(session.host.url);
  await page.getByLabel('Image path').fill(path);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
}

/** Nothing on the page is wider than the window (the dialog included). */
async function assertNoHorizontalOverflow(page: Page, what: string): Promise<void> {
  const over = await page.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth');
  assert.ok((over as number) <= 0, `${what}: the page scrolls sideways by ${over}px`);
  const dialogOver = await page.evaluate(`(() => { const d = document.querySelector('dialog[open]'); if (!d) return 0; const r = d.getBoundingClientRect(); return Math.max(0, r.right - window.innerWidth, -r.left, d.scrollWidth - d.clientWidth); })()`);
  assert.equal(dialogOver, 0, `${what}: the dialog overflows`);
}

/** axe-core's WCAG 2 A/AA rules over one part of the page: no violation. */
async function assertAccessible(page: Page, selector: string, what: string): Promise<void> {
  const r = await new AxeBuilder({ page }).include(selector).withTags(['wcag2a', 'wcag2aa']).analyze();
  assert.deepEqual(r.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`), [], `${what}: axe-core finds no violation`);
}

const activeId = (page: Page) => page.evaluate('document.activeElement && document.activeElement.id') as Promise<string | null>;

test('an encrypted image opens by typing its passphrase in a real dialog; a wrong one is refused in one plain line', async () => {
  const img = qemuLuksImage('locked.qcow2');
  const before = readFileSync(img);
  const { page } = session.browser;
  await openInApp(page, img);

  const dialog = page.getByRole('dialog', { name: 'Passphrase for locked.qcow2' });
  await dialog.waitFor();
  const field = dialog.getByLabel('Passphrase', { exact: true });
  assert.equal(await field.getAttribute('type'), 'password', 'the field is masked');
  assert.equal(await activeId(page), 'passphrase-field', 'focus moves into the dialog');
  assert.equal(await page.evaluate("document.querySelector('dialog').matches(':modal')"), true, 'the dialog is modal');
  // Behind it, the image is open without its key: its facts and its map are there already.
  await page.getByRole('heading', { name: 'locked.qcow2', level: 1 }).waitFor();
  await page.getByRole('img', { name: /^Allocation map:/ }).waitFor({ state: 'attached' });
  await assertAccessible(page, 'dialog', 'the passphrase dialog');
  await page.screenshot({ path: join(SHOTS, 'encryption-dialog-1280.png'), fullPage: true });
  await assertNoHorizontalOverflow(page, '1280×800 dialog');
  await page.setViewportSize({ width: 800, height: 600 });
  await page.screenshot({ path: join(SHOTS, 'encryption-dialog-800.png'), fullPage: true });
  await assertNoHorizontalOverflow(page, '800×600 dialog');
  await page.setViewportSize({ width: 1280, height: 800 });

  // Show unmasks, and masks again.
  await field.fill('peek');
  await dialog.getByRole('button', { name: 'Show' }).click();
  assert.equal(await field.getAttribute('type'), 'text');
  await dialog.getByRole('button', { name: 'Show' }).click();
  assert.equal(await field.getAttribute('type'), 'password');

  // Caps Lock is said when the key events say it is on.
  await page.evaluate(`document.getElementById('passphrase-field').dispatchEvent(new KeyboardEvent('keyup', { key: 'A', modifierCapsLock: true, bubbles: true }))`);
  await dialog.getByText('Caps Lock is on.').waitFor();
  await page.evaluate(`document.getElementById('passphrase-field').dispatchEvent(new KeyboardEvent('keyup', { key: 'a', modifierCapsLock: false, bubbles: true }))`);
  assert.equal(await dialog.getByText('Caps Lock is on.').count(), 0);

  // A wrong passphrase: one plain line, the field emptied, the dialog still open.
  await field.fill('not it');
  await field.press('Enter');
  const error = dialog.getByTestId('passphrase-error');
  await error.waitFor();
  assert.equal(await error.innerText(), 'The passphrase does not open any key slot.');
  assert.equal(await field.inputValue(), '', 'the field is emptied after use');
  assert.equal(keyFor(img), undefined, 'a wrong passphrase is not held');
  await page.screenshot({ path: join(SHOTS, 'encryption-wrong-1280.png'), fullPage: true });
  await assertNoHorizontalOverflow(page, 'wrong passphrase');

  await field.fill(PASS);
  await dialog.getByRole('button', { name: 'Unlock' }).click();
  await dialog.waitFor({ state: 'hidden' });
  assert.ok(keyFor(img), 'the main process holds the key');
  assert.equal(await page.evaluate(`[...document.querySelectorAll('input')].some((i) => i.value.includes(${JSON.stringify(PASS)}))`), false, 'no field keeps the passphrase');

  const card = page.getByTestId('encryption-card');
  await card.waitFor();
  assert.equal(await card.getByTestId('encryption-headline').innerText(), 'Encrypted (LUKS, aes-256-xts)');
  const q = JSON.parse(must('qemu-img', ['info', '--output=json', img]).stdout);
  const qslots = q['format-specific'].data.encrypt.slots as Array<{ active: boolean; iters?: number }>;
  const rows = card.getByRole('table', { name: 'Key slots of locked.qcow2' }).locator('tbody tr');
  assert.equal(await rows.count(), qslots.length);
  for (let i = 0; i < qslots.length; i++) {
    const cells = await rows.nth(i).locator('td').allInnerTexts();
    assert.equal(cells[1], qslots[i].active ? 'In use' : 'Empty');
    if (qslots[i].active) assert.equal(cells[2], qslots[i].iters!.toLocaleString('en-US'));
  }
  assert.match(await card.getByTestId('key-state').innerText(), /^Unlocked for this session/);
  // Unlocked, what reads data is offered (the fingerprint reads the whole disk through the held key).
  await page.getByTestId('fingerprint').waitFor();
  const map = page.getByRole('img', { name: /^Allocation map:/ });
  await map.waitFor();
  await assertAccessible(page, '[data-testid="encryption-card"]', 'the Encryption card');
  await page.screenshot({ path: join(SHOTS, 'encryption-unlocked-1280.png'), fullPage: true });
  await assertNoHorizontalOverflow(page, 'unlocked');

  // Closing the image wipes the key.
  await page.getByRole('button', { name: '← Open another image' }).click();
  await page.getByLabel('Image path').waitFor();
  await page.waitForFunction('true');
  for (let i = 0; i < 50 && keyFor(img); i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(keyFor(img), undefined, 'the key is forgotten when the image is closed');
  assert.ok(readFileSync(img).equals(before), 'opening and unlocking never changed the image');
  assert.deepEqual(session.browser.problems, []);
});

test('Escape keeps the image open without its data; Unlock… asks again and focus comes back to it', async () => {
  const img = qemuLuksImage('cancelled.qcow2');
  const { page } = session.browser;
  await openInApp(page, img);
  const dialog = page.getByRole('dialog', { name: 'Passphrase for cancelled.qcow2' });
  await dialog.waitFor();
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });
  // Without the key: the facts, the map and the LUKS details, no fingerprint, and the card says it is locked.
  await page.getByRole('img', { name: /^Allocation map:/ }).waitFor();
  const card = page.getByTestId('encryption-card');
  assert.match(await card.getByTestId('key-state').innerText(), /^Locked/);
  assert.equal(await page.getByTestId('fingerprint').count(), 0);
  // The LUKS details are the Encryption card's: the format's own card does not repeat them as one long line.
  const details = await page.getByRole('region', { name: 'QCOW2 details' }).innerText();
  assert.doesNotMatch(details, /Cipher alg|Key offset/);
  await page.screenshot({ path: join(SHOTS, 'encryption-locked-1280.png'), fullPage: true });
  await assertNoHorizontalOverflow(page, 'locked');

  const unlock = card.getByRole('button', { name: 'Unlock…' });
  await unlock.click();
  await dialog.waitFor();
  assert.equal(await activeId(page), 'passphrase-field');
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await dialog.waitFor({ state: 'hidden' });
  assert.equal(await page.evaluate("document.activeElement && document.activeElement.textContent.trim()"), 'Unlock…', 'focus returns to the button that opened the dialog');

  // Convert… on a locked image asks for the key (the source's data is read); declining says why, plainly.
  await page.getByRole('button', { name: 'Convert…' }).click();
  await dialog.waitFor();
  assert.match(await dialog.innerText(), /Copying it reads its data, so its passphrase is needed/);
  await page.keyboard.press('Escape');
  await page.getByText(/cancelled\.qcow2 is encrypted: its passphrase is needed to copy its data/).waitFor();
  assert.deepEqual(session.browser.problems, []);
});

test('New Image makes a LUKS qcow2 that qemu-img takes with the secret; its data is not in the file as plain bytes', async () => {
  const { page } = session.browser;
  await page.goto(session.host.url);
  await page.getByRole('button', { name: 'New image…' }).click();
  await page.locator('.format-choice[data-format="qcow2"]').click();
  await page.getByRole('heading', { name: 'QCOW2 image' }).waitFor();
  await page.getByLabel('Virtual size').fill('16M');
  await page.getByLabel('Encrypt with a passphrase').check();
  const pass = page.locator('#new-encrypt-pass');
  const again = page.locator('#new-encrypt-confirm');
  assert.equal(await pass.getAttribute('type'), 'password');
  assert.equal(await again.getAttribute('type'), 'password');
  await pass.fill('abc');
  assert.match(await page.getByTestId('strength').innerText(), /^Weak/);
  await pass.fill(PASS);
  assert.match(await page.getByTestId('strength').innerText(), /^(Good|Strong)/);
  await again.fill(PASS + 'x');
  await page.getByText('The two passphrases differ.').waitFor();
  const target = session.work.path('made-here.qcow2');
  await page.getByLabel('Save as').fill(target);
  await page.getByLabel('Save as').blur();
  assert.equal(await page.getByRole('button', { name: 'Review' }).isDisabled(), true, 'two different passphrases do not go on');
  await again.fill(PASS);
  // The original AES is behind "For old readers", said to be weak; LUKS stays the choice.
  await page.getByText('For old readers').click();
  assert.match(await page.getByTestId('aes-warning').innerText(), /^Weak/);
  assert.equal(await page.getByLabel('Use the original qcow2 AES instead of LUKS').isChecked(), false);
  // A short PBKDF2 (encrypt.iter-time, under LUKS settings) keeps the test quick; the default is qemu-img's 2000 ms.
  await page.getByText(/^LUKS settings/).click();
  await page.locator('[id="opt-encrypt.iter-time"]').fill('50');
  await assertAccessible(page, '[data-testid="encryption-choice"]', 'Encrypt with a passphrase');
  await page.screenshot({ path: join(SHOTS, 'encryption-new-1280.png'), fullPage: true });
  await assertNoHorizontalOverflow(page, 'new image');
  await page.setViewportSize({ width: 800, height: 600 });
  await page.screenshot({ path: join(SHOTS, 'encryption-new-800.png'), fullPage: true });
  await assertNoHorizontalOverflow(page, 'new image 800');
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.getByRole('button', { name: 'Review' }).click();
  await page.getByTestId('review-encryption').waitFor();
  assert.match(await page.getByTestId('review-encryption').innerText(), /^Encrypted with LUKS \(aes-256-xts\)/);
  await page.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('heading', { name: 'made-here.qcow2', level: 1 }).waitFor({ timeout: 60_000 });
  // The new image opens unlocked: no question, its key kept for the session.
  await page.getByTestId('encryption-card').getByText(/^Unlocked for this session/).waitFor();
  assert.equal(await page.getByRole('dialog').count(), 0);
  assert.ok(keyFor(target));

  const q = JSON.parse(must('qemu-img', ['info', '--output=json', target]).stdout);
  assert.equal(q.encrypted, true);
  assert.equal(q['virtual-size'], 16 << 20);
  const enc = q['format-specific'].data.encrypt;
  assert.deepEqual([enc.format, enc['cipher-alg'], enc['cipher-mode'], enc['ivgen-alg'], enc['hash-alg']], ['luks', 'aes-256', 'xts', 'plain64', 'sha256']);
  const chk = run('qemu-img', ['check', ...secretArgs(), '--image-opts', imageOpts(target)]);
  assert.equal(chk.status, 0, chk.stdout + chk.stderr);

  // Data written through the key the app holds is encrypted in the file and reads back under qemu-io.
  const marker = Buffer.alloc(65536);
  for (let i = 0; i < marker.length; i += 32) marker.write('diskwright-plain-marker-0123456', i, 'latin1');
  const dev = await openImage(target, { readOnly: false, backingPolicy: 'none' });
  await dev.write(1 << 20, marker);
  await dev.flush();
  await dev.close();
  assert.equal(readFileSync(target).includes(marker.subarray(0, 31)), false, 'the file holds no plain data');
  assert.equal(readFileSync(target).includes(Buffer.from(PASS)), false, 'the file holds no passphrase');
  const markerFile = session.work.path('marker.bin');
  writeFileSync(markerFile, marker);
  const readBack = session.work.path('read-back.raw');
  must('qemu-img', ['convert', ...secretArgs(), '--image-opts', imageOpts(target), '-O', 'raw', readBack]);
  assert.ok(readFileSync(readBack).subarray(1 << 20, (1 << 20) + marker.length).equals(marker), 'qemu decrypts what was written');
  assert.deepEqual(session.browser.problems, []);
});

test('Convert copies an encrypted image into a plain one, says so on review, and verifies; qemu-img compare agrees', async () => {
  const img = qemuLuksImage('to-decrypt.qcow2');
  const { page } = session.browser;
  await openInApp(page, img);
  const dialog = page.getByRole('dialog', { name: 'Passphrase for to-decrypt.qcow2' });
  await dialog.getByLabel('Passphrase', { exact: true }).fill(PASS);
  await dialog.getByRole('button', { name: 'Unlock' }).click();
  await dialog.waitFor({ state: 'hidden' });
  await page.getByRole('img', { name: /^Allocation map:/ }).waitFor();
  await page.getByRole('button', { name: 'Convert…' }).click();
  // The source is unlocked already: no second question.
  await page.locator('.format-choice[data-format="raw"]').click();
  assert.equal(await page.getByRole('dialog').count(), 0);
  const target = session.work.path('decrypted.raw');
  await page.getByLabel('Save as').fill(target);
  await page.getByLabel('Save as').blur();
  await page.getByRole('button', { name: 'Review' }).click();
  const note = page.getByTestId('review-decrypting');
  await note.waitFor();
  assert.match(await note.innerText(), /^The copy will not be encrypted/);
  await page.screenshot({ path: join(SHOTS, 'encryption-convert-review-1280.png'), fullPage: true });
  await assertNoHorizontalOverflow(page, 'convert review');
  await page.getByRole('button', { name: 'Convert', exact: true }).click();
  await page.getByTestId('result').waitFor({ timeout: 60_000 });
  await page.getByTestId('verified').waitFor();
  const cmp = run('qemu-img', ['compare', ...secretArgs(), '--image-opts', imageOpts(img), `driver=raw,file.filename=${target}`]);
  assert.equal(cmp.status, 0, cmp.stdout + cmp.stderr);
  assert.match(cmp.stdout, /Images are identical/);
  // The plain copy does hold the data in the clear (0x6b at the start), the source does not.
  const plain = readFileSync(target);
  assert.ok(plain.subarray(0, 4096).every((b) => b === 0x6b));
  assert.equal(readFileSync(img).includes(Buffer.alloc(4096, 0x6b)), false);
  // The page reloaded (or closed) ends the session: the key held for the source is wiped.
  assert.ok(keyFor(img));
  await page.reload();
  for (let i = 0; i < 100 && keyFor(img); i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(keyFor(img), undefined, 'a reloaded page leaves no key held');
  assert.deepEqual(session.browser.problems, []);
});

test('Convert makes an encrypted qcow2 of a plain image, verified; the new image opens unlocked and qemu-img compare agrees', async () => {
  const src = session.work.path('plain-source.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', src, '8M']);
  must('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x4d 0 1M', '-c', 'write -P 0x4e 6M 512k', src]);
  const { page } = session.browser;
  await openInApp(page, src);
  await page.getByRole('img', { name: /^Allocation map:/ }).waitFor();
  assert.equal(await page.getByRole('dialog').count(), 0, 'a plain image asks for nothing');
  await page.getByRole('button', { name: 'Convert…' }).click();
  await page.locator('.format-choice[data-format="qcow2"]').click();
  const target = session.work.path('encrypted-copy.qcow2');
  await page.getByLabel('Save as').fill(target);
  await page.getByLabel('Save as').blur();
  await page.getByLabel('Encrypt with a passphrase').check();
  await page.locator('#convert-encrypt-pass').fill(PASS);
  await page.locator('#convert-encrypt-confirm').fill(PASS);
  await page.getByText(/^LUKS settings/).click();
  await page.locator('[id="opt-encrypt.iter-time"]').fill('50');
  await page.getByRole('button', { name: 'Review' }).click();
  await page.getByTestId('review-encryption').waitFor();
  assert.equal(await page.getByTestId('review-decrypting').count(), 0);
  // The passphrase left the page at Review: no field holds it any more.
  assert.equal(await page.evaluate(`[...document.querySelectorAll('input')].some((i) => i.value.includes(${JSON.stringify(PASS)}))`), false);
  await page.getByRole('button', { name: 'Convert', exact: true }).click();
  await page.getByTestId('result').waitFor({ timeout: 60_000 });
  await page.getByTestId('verified').waitFor();
  const cmp = run('qemu-img', ['compare', ...secretArgs(), '--image-opts', imageOpts(target), `driver=qcow2,file.filename=${src}`]);
  assert.equal(cmp.status, 0, cmp.stdout + cmp.stderr);
  const chk = run('qemu-img', ['check', ...secretArgs(), '--image-opts', imageOpts(target)]);
  assert.equal(chk.status, 0, chk.stdout + chk.stderr);
  assert.equal(readFileSync(target).includes(Buffer.alloc(4096, 0x4d)), false, 'the encrypted copy holds no plain data');
  await page.getByRole('button', { name: 'Open the new image' }).click();
  await page.getByRole('heading', { name: 'encrypted-copy.qcow2', level: 1 }).waitFor();
  await page.getByTestId('encryption-card').getByText(/^Unlocked for this session/).waitFor();
  assert.equal(await page.getByRole('dialog').count(), 0);
  assert.deepEqual(session.browser.problems, []);
});

test('an encrypted backing file is asked for by name when its overlay is opened', async () => {
  const base = qemuLuksImage('enc-base.qcow2');
  const top = session.work.path('overlay.qcow2');
  // -u: qemu-img cannot open the encrypted base without its secret, and needs not to (the size is given).
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-b', 'enc-base.qcow2', '-F', 'qcow2', top, '32M']);
  const { page } = session.browser;
  await openInApp(page, top);
  const dialog = page.getByRole('dialog', { name: 'Passphrase for enc-base.qcow2' });
  await dialog.waitFor();
  assert.match(await dialog.innerText(), /This image's backing file enc-base\.qcow2 is encrypted/);
  await dialog.getByLabel('Passphrase', { exact: true }).fill(PASS);
  await dialog.getByRole('button', { name: 'Unlock' }).click();
  await dialog.waitFor({ state: 'hidden' });
  assert.ok(keyFor(base));
  assert.match(await page.getByTestId('encryption-card').innerText(), /Encrypted \(LUKS, aes-256-xts\) — backing file enc-base\.qcow2/);
  // The overlay's data reads through the base's held key: the fingerprint is computed.
  await page.getByRole('button', { name: 'Compute the fingerprint' }).click();
  await page.getByTestId('fingerprint-value').waitFor({ timeout: 60_000 });
  await page.getByRole('button', { name: '← Open another image' }).click();
  for (let i = 0; i < 50 && keyFor(base); i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(keyFor(base), undefined, 'the backing file\'s key goes with the image');
  assert.deepEqual(session.browser.problems, []);
});

test('an image in the original qcow2 AES is said to be weak; its passphrase cannot be checked, and the data then reads as qemu reads it', async () => {
  const img = session.work.path('legacy-aes.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', ...secretArgs(), '-o', 'encrypt.format=aes,encrypt.key-secret=s0', img, '4M']);
  must('qemu-io', [...secretArgs(), '--image-opts', imageOpts(img), '-c', 'write -P 0x77 0 64k']);
  const { page } = session.browser;
  await openInApp(page, img);
  const dialog = page.getByRole('dialog', { name: 'Passphrase for legacy-aes.qcow2' });
  await dialog.waitFor();
  assert.match(await dialog.innerText(), /encrypted \(the original qcow2 AES\)[\s\S]*cannot tell a wrong passphrase/);
  await dialog.getByLabel('Passphrase', { exact: true }).fill(PASS);
  await dialog.getByRole('button', { name: 'Unlock' }).click();
  await dialog.waitFor({ state: 'hidden' });
  const card = page.getByTestId('encryption-card');
  assert.equal(await card.getByTestId('encryption-headline').innerText(), 'Encrypted (AES, legacy — weak)');
  assert.match(await card.innerText(), /convert it to a LUKS-encrypted image/);
  // The data as qemu decrypts it: the fingerprint of the image equals the fingerprint of qemu's plain copy.
  const plain = session.work.path('legacy-plain.raw');
  must('qemu-img', ['convert', ...secretArgs(), '--image-opts', imageOpts(img), '-O', 'raw', plain]);
  await page.getByRole('button', { name: 'Compute the fingerprint' }).click();
  const fp = await page.getByTestId('fingerprint-value').innerText();
  const theirs = dw(['checksum', '-f', 'raw', plain]).stdout;
  assert.ok(theirs.includes(fp.trim()), `the fingerprint ${fp} is that of qemu's plain copy (${theirs.trim()})`);
  assert.deepEqual(session.browser.problems, []);
});

test('a passphrase handed over for a new image is wiped when the page goes before the image is made', async () => {
  const { page } = session.browser;
  await page.goto(session.host.url);
  await page.getByRole('button', { name: 'New image…' }).click();
  await page.locator('.format-choice[data-format="qcow2"]').click();
  await page.getByLabel('Virtual size').fill('4M');
  await page.getByLabel('Encrypt with a passphrase').check();
  await page.locator('#new-encrypt-pass').fill(PASS);
  await page.locator('#new-encrypt-confirm').fill(PASS);
  const target = session.work.path('never-made.qcow2');
  await page.getByLabel('Save as').fill(target);
  await page.getByLabel('Save as').blur();
  await page.getByRole('button', { name: 'Review' }).click();
  await page.getByTestId('review-encryption').waitFor();
  for (let i = 0; i < 50 && !keyFor(target); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(keyFor(target), 'Review handed the passphrase to the main process');
  await page.reload();
  for (let i = 0; i < 100 && keyFor(target); i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(keyFor(target), undefined, 'the target\'s key went with the page');
  assert.deepEqual(session.browser.problems, []);
});
