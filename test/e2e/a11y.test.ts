/**
 * Accessibility: axe-core (through @axe-core/playwright) on every view and wizard step of the walk in tour.ts, in
 * the light and the dark theme: no violation of serious or critical impact (missing names, contrast too low,
 * broken ARIA, …). Each violation is reported with its rule, help text and the elements it was found on.
 */
import assert from 'node:assert/strict';
import { AxeBuilder } from '@axe-core/playwright';
import { e2eSession, test } from './browser';
import { makeTourImages, tour } from './tour';

const session = e2eSession('dw-e2e-a11y-');

test('axe finds no serious or critical violation in any view or wizard step, light or dark', async () => {
  const { page } = session.browser;
  const images = makeTourImages(session);
  const failures: string[] = [];
  let stops = 0;
  await tour(page, session, images, async (stop) => {
    stops++;
    for (const theme of ['light', 'dark'] as const) {
      await page.emulateMedia({ colorScheme: theme });
      await page.waitForTimeout(60);
      const result = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']).analyze();
      for (const v of result.violations) {
        if (v.impact !== 'serious' && v.impact !== 'critical') continue;
        const where = v.nodes.slice(0, 4).map((n) => n.target.join(' ')).join('; ');
        failures.push(`${stop} (${theme}): ${v.id} [${v.impact}] ${v.help} — ${where}`);
      }
    }
    await page.emulateMedia({ colorScheme: 'light' });
  });
  assert.ok(stops >= 20, `the walk stopped at ${stops} places`);
  assert.deepEqual(failures, [], failures.join('\n'));
});

test('the audit is not blind: an image without a text alternative and a button without a name are reported', async () => {
  const { page } = session.browser;
  await page.goto(session.host.url);
  await page.getByLabel('Image path').waitFor();
  await page.evaluate(`(() => {
    const img = document.createElement('img');
    img.src = 'data:image/gif;base64,R0lGODlhAQABAAAAACw=';
    document.querySelector('h1').after(img);
    document.querySelector('h1').after(document.createElement('button'));
  })()`);
  const result = await new AxeBuilder({ page }).analyze();
  const ids = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => v.id);
  assert.ok(ids.includes('image-alt'), ids.join(', '));
  assert.ok(ids.includes('button-name'), ids.join(', '));
});
