/**
 * The one rule both faces (Electron's app:// handler and the browser host) use to serve the built renderer:
 * nothing outside the folder, no dotfiles, and no link inside the folder that leads out of it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { realRendererFile, rendererPathFor } from '../../src-main/api/renderer-files';
import { scratch } from '../helpers';

test('a request path names a file inside the renderer folder or nothing', () => {
  const root = '/srv/renderer';
  assert.equal(rendererPathFor(root, '/'), join(root, 'index.html'));
  assert.equal(rendererPathFor(root, '/assets/app.js'), join(root, 'assets/app.js'));
  for (const bad of ['/../package.json', '/../../etc/passwd', '/assets/../../x', '/.env', '/assets/.hidden/x.js', '/a\0b', '/a\\..\\b']) {
    assert.equal(rendererPathFor(root, bad), null, bad);
  }
});

test('links are followed and must still land on a regular file inside the folder', async (t) => {
  const s = scratch();
  t.after(s.cleanup);
  const root = s.path('renderer');
  mkdirSync(join(root, 'assets'), { recursive: true });
  writeFileSync(join(root, 'index.html'), '<!doctype html>');
  writeFileSync(s.path('secret.txt'), 'outside');
  symlinkSync(s.path('secret.txt'), join(root, 'leak.txt'));
  symlinkSync(join(root, 'index.html'), join(root, 'assets', 'again.html'));
  symlinkSync(s.dir, join(root, 'up'));
  assert.equal(await realRendererFile(root, join(root, 'index.html')), join(root, 'index.html'));
  assert.equal(await realRendererFile(root, join(root, 'assets', 'again.html')), join(root, 'index.html'));
  assert.equal(await realRendererFile(root, join(root, 'leak.txt')), null);
  assert.equal(await realRendererFile(root, join(root, 'up', 'secret.txt')), null);
  assert.equal(await realRendererFile(root, join(root, 'assets')), null, 'a folder is not served');
  assert.equal(await realRendererFile(root, join(root, 'missing.js')), null);
});
