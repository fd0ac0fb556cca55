/**
 * The layout audit: every view and wizard step (tour.ts), at 1280×800 and 800×600, fails the run on what a person
 * would see as broken (layout.ts): a form control or action button taller than 48 px, content spilling out of its
 * box, clipped text, a button overlapping a button, a field or text, a button touching the text above it, a page
 * that scrolls sideways. Each stop is screenshotted in the light and the dark theme at both sizes, and the run
 * ends by stitching them into contact sheets (contact-sheet-<theme>-<width>.png) for a person to review at a glance.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright';
import { e2eSession, SHOTS, test } from './browser';
import { contactSheet, type Shot } from './contact-sheet';
import { layoutDefects } from './layout';
import { makeTourImages, tour } from './tour';

const session = e2eSession('dw-e2e-layout-');
const SIZES = [
  { width: 1280, height: 800 },
  { width: 800, height: 600 },
];
const THEMES = ['light', 'dark'] as const;

test('layout audit: no tall control, overflow, clipped text, overlap, cramped button or sideways scroll in any view or wizard step at 1280×800 and 800×600; contact sheets in both themes', async () => {
  const { page, context } = session.browser;
  const failures: string[] = [];
  const stops: string[] = [];
  const images = makeTourImages(session);

  async function audit(p: Page, stop: string): Promise<void> {
    stops.push(stop);
    for (const size of SIZES) {
      await p.setViewportSize(size);
      for (const theme of THEMES) {
        await p.emulateMedia({ colorScheme: theme });
        await p.waitForTimeout(60);
        if (theme === 'light') for (const d of await layoutDefects(p)) failures.push(`${stop} at ${size.width}×${size.height}: ${d.what}: ${d.detail}`);
        await p.screenshot({ path: join(SHOTS, `audit-${stop}-${theme}-${size.width}.png`), fullPage: true });
      }
    }
    await p.emulateMedia({ colorScheme: 'light' });
    await p.setViewportSize(SIZES[0]);
  }

  await tour(page, session, images, (stop) => audit(page, stop));

  for (const theme of THEMES) {
    for (const size of SIZES) {
      const shots: Shot[] = stops.map((s) => ({ label: s, file: join(SHOTS, `audit-${s}-${theme}-${size.width}.png`) }));
      const out = join(SHOTS, `contact-sheet-${theme}-${size.width}.png`);
      await contactSheet(context, shots, out, 4, size.width === 1280 ? 480 : 360);
      assert.ok(existsSync(out), out);
    }
  }
  assert.deepEqual(failures, [], failures.join('\n'));
  assert.ok(stops.length >= 20, `the tour stopped at ${stops.length} places`);
});
