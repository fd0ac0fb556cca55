/**
 * preloadDrivers (the app and the browser host call it once they are up, so the first image opens as fast as the
 * next): every module a driver names loads (a wrong path would reject), and every format whose open loads its
 * code on first use has a preload.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DRIVERS, preloadDrivers } from '../../src-main/registry';

test('preloadDrivers loads every driver\'s code without error', async () => {
  await preloadDrivers();
  for (const d of DRIVERS) if (d.preload) await d.preload();
});

test('every driver whose open imports its code lazily has a preload', () => {
  const root = join(__dirname, '..', '..', 'src-main', 'formats');
  for (const d of DRIVERS) {
    const source = readFileSync(join(root, d.name, 'driver.ts'), 'utf8');
    const lazy = /async open\([^)]*\)[^{]*\{[^}]*await import\(/.test(source) || /^async function open\([^)]*\)[^{]*\{\n[^\n]*await Promise\.all\(\[import\(/m.test(source) || /\(await import\('\.\/device'\)\)/.test(source);
    if (lazy) assert.equal(typeof d.preload, 'function', `${d.name}: open loads code lazily but the driver has no preload`);
  }
});
