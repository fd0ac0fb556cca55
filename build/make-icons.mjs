// Renders build/icon.svg to build/icon.png (512×512, transparent corners) with the Chromium the e2e
// tests use. electron-builder derives the .ico/.icns it needs from the PNG. Run: node build/make-icons.mjs
import { readFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright';

const here = dirname(fileURLToPath(import.meta.url));
const svg = readFileSync(join(here, 'icon.svg'), 'utf8');
const profile = mkdtempSync(join(tmpdir(), 'dw-icon-'));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--headless', '--disable-gpu'],
  viewport: { width: 512, height: 512 },
  deviceScaleFactor: 1,
});
try {
  const page = await browser.newPage();
  await page.setContent(`<html><body style="margin:0;background:transparent">${svg}</body></html>`);
  await page.locator('svg').screenshot({ path: join(here, 'icon.png'), omitBackground: true });
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log('wrote build/icon.png');
