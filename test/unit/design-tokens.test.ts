/**
 * The renderer's colours live in one file, src-renderer/tokens.css, as CSS custom properties (with a dark theme
 * by prefers-color-scheme). A raw hex colour written anywhere else in src-renderer (a stylesheet, a component's
 * style block or script, a canvas colour) is a colour the dark theme cannot reach: this test refuses it. The
 * maps read their palette from the tokens too, and the tokens must define every colour the dark theme re-assigns.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { ROOT } from '../helpers';

const RENDERER = join(ROOT, 'src-renderer');
const TOKENS = join(RENDERER, 'tokens.css');
/** A hex colour: #rgb, #rgba, #rrggbb, #rrggbbaa, not followed by more word characters (so not an id like #app-1). */
const HEX = /#(?:[0-9a-fA-F]{8}|[0-9a-fA-F]{6}|[0-9a-fA-F]{3,4})(?![\w-])/g;

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return files(p);
    // Images (the app icon) are pictures, not styles.
    return /\.(css|vue|ts|html)$/.test(name) ? [p] : [];
  });
}

export function rawHexColours(text: string): string[] {
  // Comments may quote a colour in words; only what is written as code counts.
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/<!--[\s\S]*?-->/g, '').replace(/(^|[^:])\/\/.*$/gm, '$1');
  return [...code.matchAll(HEX)].map((m) => m[0]);
}

test('no raw hex colour in src-renderer outside tokens.css', () => {
  const found: string[] = [];
  for (const f of files(RENDERER)) {
    if (f === TOKENS) continue;
    for (const hex of rawHexColours(readFileSync(f, 'utf8'))) found.push(`${relative(ROOT, f)}: ${hex}`);
  }
  assert.deepEqual(found, []);
});

test('the check itself finds a hex colour in a style, a script and a template', () => {
  assert.deepEqual(rawHexColours('.a { color: #fff; border: 1px solid #c5ccd6; }'), ['#fff', '#c5ccd6']);
  assert.deepEqual(rawHexColours("const C = { data: '#2f5a8c33' };"), ['#2f5a8c33']);
  assert.deepEqual(rawHexColours('<a href="#top">x</a> /* #abc */'), []);
});

test('the dark theme re-assigns only tokens the light theme defines, and the maps read theirs from the tokens', () => {
  const css = readFileSync(TOKENS, 'utf8');
  const dark = css.slice(css.indexOf('prefers-color-scheme: dark'));
  const light = css.slice(0, css.indexOf('@media'));
  const names = (s: string) => new Set([...s.matchAll(/(--[\w-]+):/g)].map((m) => m[1]));
  const lightNames = names(light);
  const darkNames = names(dark);
  assert.ok(darkNames.size > 20, 'the dark theme assigns the colours');
  for (const n of darkNames) assert.ok(lightNames.has(n), `${n} is set in the dark theme only`);
  for (const n of ['--space-1', '--radius', '--text-sm', '--map-data', '--diff-differs']) assert.ok(lightNames.has(n), `${n} is a token`);
  for (const map of ['components/AllocationMap.vue', 'components/SnapshotDiffMap.vue']) {
    assert.match(readFileSync(join(RENDERER, map), 'utf8'), /readPalette\(/, `${map} reads its colours from the tokens`);
  }
});
