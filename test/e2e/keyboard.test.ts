/**
 * Every wizard completed with the keyboard alone (issue 25's guard rail): Tab, Shift-Tab, Enter, Space, the arrow
 * keys and typing — no mouse click anywhere. New Image, Convert (with its verify), Check & Repair, Compact, and
 * the snapshot browser's take and revert, each judged by the oracle (qemu-img info/check/compare, qemu-io) as the
 * clicked-through tests judge them. After every step change the focus must be inside the new step (not dropped on
 * <body>, where the next Tab would start over at the top of the page): `stepFocus` checks it.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright';
import { AxeBuilder } from '@axe-core/playwright';
import { Qcow2Patcher } from '../interop/qcow2-check-patch';
import { must, qemuIo, run } from '../helpers';
import { e2eSession, SHOTS, test } from './browser';

const session = e2eSession('dw-e2e-keyboard-');
const MiB = 1 << 20;

interface Focused {
  tag: string;
  id: string;
  text: string;
  label: string;
  testid: string;
  data: string;
  type: string;
}

// As text: tsx's helpers do not exist in the page.
const ACTIVE = `(() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const labelled = el.labels && el.labels[0] ? el.labels[0].innerText : '';
  return {
    tag: el.tagName.toLowerCase(),
    id: el.id || '',
    text: (el.innerText || '').trim().replace(/\\s+/g, ' ').slice(0, 80),
    label: (el.getAttribute('aria-label') || labelled || '').trim().replace(/\\s+/g, ' '),
    testid: el.getAttribute('data-testid') || '',
    data: el.getAttribute('data-format') || el.getAttribute('data-snapshot') || el.getAttribute('data-compare') || '',
    type: el.getAttribute('type') || '',
  };
})()`;

const focused = (page: Page) => page.evaluate(ACTIVE) as Promise<Focused | null>;
const describe = (f: Focused | null) => (f ? `${f.tag}${f.id ? '#' + f.id : ''} “${f.label || f.text}”` : '<body>');

/** Presses Tab (Shift-Tab with `back`) until the focused element is the one wanted; fails naming the way it went. */
async function tabTo(page: Page, want: (f: Focused) => boolean, what: string, back = false): Promise<void> {
  const seen: string[] = [];
  for (let i = 0; i < 60; i++) {
    const f = await focused(page);
    if (f && want(f)) return;
    seen.push(describe(f));
    await page.keyboard.press(back ? 'Shift+Tab' : 'Tab');
  }
  throw new Error(`${what} was not reached with ${back ? 'Shift-Tab' : 'Tab'}: ${seen.join(' → ')}`);
}
const button = (name: string | RegExp) => (f: Focused) => (f.tag === 'button' || f.type === 'submit') && (typeof name === 'string' ? f.text === name || f.label === name : name.test(f.text));
const field = (label: string | RegExp) => (f: Focused) => ['input', 'select', 'textarea'].includes(f.tag) && (typeof label === 'string' ? f.label === label : label.test(f.label));
const data = (value: string) => (f: Focused) => f.data === value;

/** Focus, after a step change, is inside the page's content (the new step), not on <body>. */
async function stepFocus(page: Page, step: string): Promise<void> {
  const inside = await page.evaluate(`(() => { const el = document.activeElement; return !!el && el !== document.body && !!el.closest('main'); })()`);
  assert.ok(inside, `${step}: the focus is lost (${describe(await focused(page))}); the next Tab would start at the top of the page`);
}

/** Types into the focused field, replacing what it held. */
async function typeOver(page: Page, text: string): Promise<void> {
  await page.keyboard.press('Control+A');
  await page.keyboard.type(text);
}

/** Home → Image path → typed → Enter: the image opens on Inspect. */
async function openByKeyboard(page: Page, path: string, name: string): Promise<void> {
  await page.goto(session.host.url);
  await page.getByLabel('Image path').waitFor();
  await tabTo(page, field('Image path'), 'Image path');
  await typeOver(page, path);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name, level: 1 }).waitFor();
  await stepFocus(page, `Inspect ${name}`);
}

test('New Image with the keyboard alone: format, size, place, review, create', async () => {
  const { page } = session.browser;
  await page.goto(session.host.url);
  await page.getByLabel('Image path').waitFor();
  await tabTo(page, button('New image…'), 'New image…');
  await page.keyboard.press('Enter');
  await page.locator('.format-choice').first().waitFor();
  await stepFocus(page, 'New Image: format');
  await tabTo(page, data('qcow2'), 'the QCOW2 choice');
  await page.keyboard.press('Enter');
  await page.getByLabel('Virtual size').waitFor();
  await stepFocus(page, 'New Image: size and options');
  await tabTo(page, field('Virtual size'), 'Virtual size');
  await typeOver(page, '256M');
  const target = session.work.path('keys.qcow2');
  await tabTo(page, field('Save as'), 'Save as');
  await typeOver(page, target);
  await tabTo(page, button('Review'), 'Review');
  await page.keyboard.press('Enter');
  await page.getByTestId('review').waitFor();
  await stepFocus(page, 'New Image: review');
  await tabTo(page, button('Create'), 'Create');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'keys.qcow2', level: 1 }).waitFor();
  await stepFocus(page, 'Inspect after create');
  const info = JSON.parse(must('qemu-img', ['info', '--output=json', target]).stdout) as { format: string; 'virtual-size': number };
  assert.equal(info.format, 'qcow2');
  assert.equal(info['virtual-size'], 256 * MiB);
  assert.equal(run('qemu-img', ['check', target]).status, 0);
  assert.deepEqual(session.browser.problems, []);
});

test('Convert with the keyboard alone: format, place, review, convert and verify', async () => {
  const src = session.work.path('conv-src.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', src, '32M']);
  qemuIo(src, 'qcow2', ['write -P 0x5a 1M 3M', 'write -P 0x5b 20M 1M']);
  const { page } = session.browser;
  await openByKeyboard(page, src, 'conv-src.qcow2');
  await tabTo(page, button('Convert…'), 'Convert…');
  await page.keyboard.press('Enter');
  await page.locator('.format-choice[data-format="vmdk"]').waitFor();
  await stepFocus(page, 'Convert: target');
  await tabTo(page, data('vmdk'), 'the VMDK choice');
  // Space presses a button as Enter does.
  await page.keyboard.press('Space');
  await page.getByLabel('Save as').waitFor();
  const target = session.work.path('conv-out.vmdk');
  await tabTo(page, field('Save as'), 'Save as');
  await typeOver(page, target);
  await tabTo(page, (f) => f.type === 'checkbox' && /Verify afterwards/.test(f.label), 'the verify box');
  assert.equal(await page.getByLabel('Verify afterwards: compare the new image with the source').isChecked(), true);
  await tabTo(page, button('Review'), 'Review');
  await page.keyboard.press('Enter');
  await page.getByTestId('review').waitFor();
  await stepFocus(page, 'Convert: review');
  await tabTo(page, button('Convert'), 'Convert');
  await page.keyboard.press('Enter');
  await page.getByTestId('result').waitFor({ timeout: 60_000 });
  await page.getByTestId('verified').waitFor();
  await stepFocus(page, 'Convert: result');
  must('qemu-img', ['compare', src, target]);
  await tabTo(page, button('Open the new image'), 'Open the new image');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'conv-out.vmdk', level: 1 }).waitFor();
  await stepFocus(page, 'Inspect after convert');
  assert.deepEqual(session.browser.problems, []);
});

test('Check & Repair with the keyboard alone: the findings, the choice by arrow keys, the repair', async () => {
  const leaky = session.work.path('leaky.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', leaky, '16M']);
  qemuIo(leaky, 'qcow2', ['write -P 0x11 0 256k']);
  const p = new Qcow2Patcher(leaky);
  p.setRefcount(p.appendCluster(0x5a), 1);
  p.setRefcount(p.appendCluster(0x5b), 1);
  assert.equal(run('qemu-img', ['check', leaky]).status, 3, 'qemu-img finds the leaks');
  const { page } = session.browser;
  await openByKeyboard(page, leaky, 'leaky.qcow2');
  await tabTo(page, button('Check & Repair…'), 'Check & Repair…');
  await page.keyboard.press('Enter');
  await page.getByTestId('findings').getByRole('heading', { level: 2 }).waitFor();
  await stepFocus(page, 'Check & Repair: findings');
  await page.screenshot({ path: join(SHOTS, 'keyboard-check-findings.png'), fullPage: true });
  await tabTo(page, (f) => f.type === 'checkbox' && /Keep/.test(f.label), 'the keep-a-copy box');
  // Space toggles a box; the copy is not wanted here.
  const keep = page.getByRole('checkbox', { name: /Keep/ });
  const kept = await keep.isChecked();
  await page.keyboard.press('Space');
  assert.equal(await keep.isChecked(), !kept, 'Space toggles the box');
  await tabTo(page, button('Repair'), 'Repair');
  await page.keyboard.press('Enter');
  await page.getByRole('button', { name: 'Back to the image' }).waitFor({ timeout: 60_000 });
  await stepFocus(page, 'Check & Repair: result');
  assert.equal(run('qemu-img', ['check', leaky]).status, 0, 'qemu-img finds it clean');
  await tabTo(page, button('Back to the image'), 'Back to the image');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'leaky.qcow2', level: 1 }).waitFor();
  assert.deepEqual(session.browser.problems, []);
});

test('Compact with the keyboard alone: preview, "Into a new image" by arrow key, compact', async () => {
  const tree = session.work.path('tree');
  mkdirSync(tree);
  writeFileSync(join(tree, 'keep.bin'), Buffer.alloc(MiB, 0x42));
  const big = Buffer.alloc(16 * MiB);
  for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((Math.imul(i + 3, 2246822519) ^ (i >>> 7)) >>> 0, i);
  writeFileSync(join(tree, 'big.bin'), big);
  const raw = session.work.path('fs.raw');
  must('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', '4096', '-d', tree, raw, '48M']);
  must('debugfs', ['-w', '-R', 'rm /big.bin', raw]);
  const img = session.work.path('fs.qcow2');
  must('qemu-img', ['convert', '-O', 'qcow2', raw, img]);
  const { page } = session.browser;
  await openByKeyboard(page, img, 'fs.qcow2');
  await tabTo(page, button('Compact…'), 'Compact…');
  await page.keyboard.press('Enter');
  await page.getByTestId('compact-preview').waitFor({ timeout: 30_000 });
  await stepFocus(page, 'Compact: preview');
  await tabTo(page, (f) => f.type === 'radio', 'the In place / Into a new image choice');
  // A radio group is moved through with the arrow keys.
  await page.keyboard.press('ArrowDown');
  assert.equal(await page.getByRole('radio', { name: 'Into a new image' }).isChecked(), true, 'ArrowDown chose "Into a new image"');
  const target = session.work.path('fs-compact.qcow2');
  await tabTo(page, (f) => f.tag === 'input' && f.type === 'text', 'the new image’s name');
  await typeOver(page, target);
  await tabTo(page, button('Compact'), 'Compact');
  await page.keyboard.press('Enter');
  await page.getByTestId('compact-given').waitFor({ timeout: 60_000 });
  await stepFocus(page, 'Compact: result');
  assert.equal(run('qemu-img', ['check', target]).status, 0);
  // The compacted copy's file system is intact (e2fsck) and holds the kept file (debugfs), the deleted one's space zeroed.
  const out = session.work.path('fs-compact.raw');
  must('qemu-img', ['convert', '-O', 'raw', target, out]);
  must('e2fsck', ['-fn', out]);
  const dumped = session.work.path('keep.out');
  must('debugfs', ['-R', `dump /keep.bin ${dumped}`, out]);
  assert.deepEqual(readFileSync(dumped), Buffer.alloc(MiB, 0x42));
  assert.deepEqual(session.browser.problems, []);
});

test('Snapshots with the keyboard alone: take one, then revert to the first keeping the state left', async () => {
  const img = session.work.path('snap.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '32M']);
  qemuIo(img, 'qcow2', ['write -P 0x11 0 2M']);
  must('qemu-img', ['snapshot', '-c', 'first', img]);
  qemuIo(img, 'qcow2', ['write -P 0x22 0 2M']);
  const { page } = session.browser;
  await openByKeyboard(page, img, 'snap.qcow2');
  await tabTo(page, button('Snapshots…'), 'Snapshots…');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Snapshots of snap.qcow2', level: 1 }).waitFor();
  await stepFocus(page, 'Snapshots');
  await page.getByTestId('timeline').getByText('counting…').first().waitFor({ state: 'detached' });

  await tabTo(page, button('Take snapshot…'), 'Take snapshot…');
  await page.keyboard.press('Enter');
  await page.getByLabel('Name', { exact: true }).waitFor();
  assert.equal((await focused(page))?.id, 'snapshot-name', 'the name field has the focus');
  await typeOver(page, 'by-keyboard');
  await tabTo(page, button('Take snapshot'), 'Take snapshot');
  await page.keyboard.press('Enter');
  await page.getByTestId('done').getByText('Snapshot “by-keyboard” taken.').waitFor({ timeout: 60_000 });
  await stepFocus(page, 'Snapshots: after taking');
  const names = () => ((JSON.parse(must('qemu-img', ['info', '--output=json', img]).stdout).snapshots ?? []) as Array<{ name: string }>).map((s) => s.name);
  assert.deepEqual(names(), ['first', 'by-keyboard']);
  await page.getByTestId('timeline').getByText('counting…').first().waitFor({ state: 'detached' });

  await tabTo(page, data('first'), 'the “first” card');
  await page.keyboard.press('Enter');
  await page.getByTestId('revert').waitFor();
  await tabTo(page, button(/^Revert to “first”/), 'Revert to “first”…');
  await page.keyboard.press('Enter');
  await page.getByTestId('confirm').waitFor();
  await stepFocus(page, 'Snapshots: revert confirmation');
  await tabTo(page, field('Its name'), 'Its name');
  await typeOver(page, 'left-behind');
  await tabTo(page, button('Revert'), 'Revert');
  await page.keyboard.press('Enter');
  await page.getByTestId('done').getByText(/Reverted to “first”/).waitFor({ timeout: 60_000 });
  await stepFocus(page, 'Snapshots: after reverting');
  await page.screenshot({ path: join(SHOTS, 'keyboard-snapshots-reverted.png'), fullPage: true });
  // The line saying what was done is in the calm colour, readable in both themes.
  for (const scheme of ['light', 'dark'] as const) {
    await page.emulateMedia({ colorScheme: scheme });
    const axe = await new AxeBuilder({ page }).include('[data-testid="done"]').withTags(['wcag2a', 'wcag2aa']).analyze();
    assert.deepEqual(axe.violations.map((v) => v.id), [], `${scheme}: the done line passes axe-core`);
  }
  await page.emulateMedia({ colorScheme: 'light' });
  await page.getByTestId('timeline').getByText('counting…').first().waitFor({ state: 'detached' });
  await page.getByText('Drawing…').waitFor({ state: 'detached' });
  assert.deepEqual(names(), ['first', 'by-keyboard', 'left-behind']);
  must('qemu-io', ['-r', '-f', 'qcow2', '-c', 'read -P 0x11 0 2M', img]);
  assert.deepEqual(session.browser.problems, []);
});
