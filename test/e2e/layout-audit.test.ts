/**
 * The layout audit: every view and wizard step, at 1280×800 and 800×600, fails the run on what a person would
 * see as broken — a form control or action button taller than 48 px (the 210 px fields of the last round; the
 * format cards are buttons made to be tall, and are not counted), buttons overlapping
 * each other, or a page that scrolls sideways at 800 px. Screenshots of each stop are saved for review.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Page } from 'playwright';
import { must, qemuIo } from '../helpers';
import { SHOTS, e2eSession } from './browser';

const session = e2eSession('dw-e2e-layout-');
const SIZES = [
  { width: 1280, height: 800 },
  { width: 800, height: 600 },
];

interface Defect {
  what: string;
  detail: string;
}

/** What the page shows wrong right now (measured in the page: visible elements only). */
async function layoutDefects(page: Page): Promise<Defect[]> {
  // Given as text: the test runner's TypeScript transform adds helpers (__name) that the page does not have.
  return page.evaluate(`(() => {
    const out = [];
    const visible = (el) => {
      const r = el.getBoundingClientRect();
      const st = getComputedStyle(el);
      return r.width > 0 && r.height > 0 && st.visibility !== 'hidden' && st.display !== 'none';
    };
    const name = (el) => \`\${el.tagName.toLowerCase()}\${el.id ? '#' + el.id : ''}\${el.innerText ? \` “\${el.innerText.trim().slice(0, 30)}”\` : ''}\`;
    for (const el of Array.from(document.querySelectorAll('input:not([type=checkbox]):not([type=radio]), select, textarea:not([rows]), .button'))) {
      if (!visible(el)) continue;
      const h = el.getBoundingClientRect().height;
      if (h > 48) out.push({ what: 'tall control', detail: \`\${name(el)} is \${Math.round(h)} px tall\` });
    }
    const buttons = Array.from(document.querySelectorAll('button, .button')).filter(visible);
    for (let i = 0; i < buttons.length; i++) {
      for (let j = i + 1; j < buttons.length; j++) {
        if (buttons[i].contains(buttons[j]) || buttons[j].contains(buttons[i])) continue;
        const a = buttons[i].getBoundingClientRect();
        const b = buttons[j].getBoundingClientRect();
        const overlapX = Math.min(a.right, b.right) - Math.max(a.left, b.left);
        const overlapY = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
        if (overlapX > 1 && overlapY > 1) out.push({ what: 'overlap', detail: \`\${name(buttons[i])} overlaps \${name(buttons[j])}\` });
      }
    }
    const root = document.documentElement;
    if (root.scrollWidth > root.clientWidth + 1) out.push({ what: 'sideways scroll', detail: \`the page is \${root.scrollWidth} px wide in a \${root.clientWidth} px window\` });
    return out;
  })()`);
}

/** Audits the current view at both sizes; saves a screenshot of each. */
async function audit(page: Page, stop: string, failures: string[]): Promise<void> {
  for (const size of SIZES) {
    await page.setViewportSize(size);
    await page.waitForTimeout(50);
    for (const d of await layoutDefects(page)) failures.push(`${stop} at ${size.width}×${size.height}: ${d.what}: ${d.detail}`);
    await page.screenshot({ path: join(SHOTS, `audit-${stop}-${size.width}.png`), fullPage: true });
  }
  await page.setViewportSize(SIZES[0]);
}

async function open(page: Page, image: string, name: string): Promise<void> {
  await page.goto(session.host.url);
  await page.getByLabel('Image path').fill(image);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  await page.getByRole('heading', { name, level: 1 }).waitFor();
}

test('layout audit: no form control over 48 px, no overlapping buttons, no sideways scroll, in every view and wizard step at 1280×800 and 800×600', async () => {
  const { page } = session.browser;
  const failures: string[] = [];
  const base = session.work.path('base.qcow2');
  const img = session.work.path('vm.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', base, '64M']);
  qemuIo(base, 'qcow2', ['write -P 0x11 0 4M']);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', img]);
  qemuIo(img, 'qcow2', ['write -P 0x22 8M 2M']);
  must('qemu-img', ['snapshot', '-c', 'first', img]);

  await page.goto(session.host.url);
  await page.getByLabel('Image path').waitFor();
  await audit(page, 'home', failures);

  await page.getByRole('button', { name: 'New image…' }).click();
  await audit(page, 'new-format', failures);
  await page.locator('.format-choice[data-format="qcow2"]').click();
  await page.getByLabel('Virtual size').waitFor();
  await page.locator('details.advanced summary').first().click().catch(() => undefined);
  await audit(page, 'new-details', failures);

  await open(page, img, 'vm.qcow2');
  await page.getByRole('img', { name: /^Allocation map:/ }).waitFor();
  await audit(page, 'inspect', failures);
  const changeBase = page.getByRole('button', { name: 'Change base…' });
  if (await changeBase.isVisible()) {
    await changeBase.click();
    await page.getByLabel('New base image').waitFor();
    await audit(page, 'inspect-change-base', failures);
  }

  await open(page, img, 'vm.qcow2');
  await page.getByRole('button', { name: 'Convert…' }).click();
  await page.locator('.format-choice[data-format="vmdk"]').click();
  await page.getByLabel('Save as').waitFor();
  await audit(page, 'convert', failures);

  await open(page, img, 'vm.qcow2');
  await page.getByTestId('open-snapshots').click();
  await page.getByRole('heading', { name: 'Snapshots of vm.qcow2', level: 1 }).waitFor();
  await audit(page, 'snapshots', failures);
  await page.getByTestId('take').click();
  await page.getByLabel('Name', { exact: true }).waitFor();
  await audit(page, 'snapshots-take', failures);

  await open(page, img, 'vm.qcow2');
  await page.getByRole('button', { name: 'Check & Repair…' }).click();
  await page.getByRole('heading', { level: 1 }).first().waitFor();
  await audit(page, 'check', failures);

  assert.deepEqual(failures, [], failures.join('\n'));
});
