import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiskError } from '../../src-main/block/errors';
import { PARENT_LOCATOR_VHDX_TYPE } from '../../src-main/formats/vhdx/layout';
import { linkageGuid, parentCandidates, parentDisplayName, resolveParent } from '../../src-main/formats/vhdx/parent';

const loc = (entries: Record<string, string>) => ({ type: PARENT_LOCATOR_VHDX_TYPE, entries });

test('parent locator names as Hyper-V writes them become paths here; drive letters and volume GUIDs are left out', () => {
  const l = loc({
    parent_linkage: '{83B4F9F5-3B0C-4E1A-9F3F-3BDE4D0AC3B1}',
    relative_path: '..\\base\\parent.vhdx',
    volume_path: '\\\\?\\Volume{26a21bda-a627-11d7-9931-806e6f6e6963}\\vm\\parent.vhdx',
    absolute_win32_path: '\\\\?\\C:\\vm\\base\\parent.vhdx',
  });
  assert.deepEqual(parentCandidates(l), ['../base/parent.vhdx']);
  assert.deepEqual(parentCandidates(loc({ relative_path: '.\\p.vhdx', absolute_win32_path: '/srv/img/p.vhdx' })), ['p.vhdx', '/srv/img/p.vhdx']);
  assert.equal(linkageGuid(l.entries.parent_linkage), '83b4f9f5-3b0c-4e1a-9f3f-3bde4d0ac3b1');
});

test('resolving the parent: the first name that exists, under the backing-path policy; plain errors otherwise', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dw-vhdx-parent-'));
  try {
    mkdirSync(join(dir, 'vm'));
    const child = join(dir, 'vm', 'child.vhdx');
    writeFileSync(join(dir, 'vm', 'p.vhdx'), 'x');
    writeFileSync(join(dir, 'outside.vhdx'), 'x');
    assert.equal(resolveParent(child, loc({ relative_path: '.\\missing.vhdx', absolute_win32_path: join(dir, 'vm', 'p.vhdx') }), 'inside-folder'), join(dir, 'vm', 'p.vhdx'));
    assert.equal(parentDisplayName(child, loc({ relative_path: '.\\p.vhdx' })), 'p.vhdx');
    const out = loc({ relative_path: '..\\outside.vhdx' });
    assert.throws(() => resolveParent(child, out, 'inside-folder'), (e: unknown) => e instanceof DiskError && e.code === 'EOUTSIDE');
    assert.equal(resolveParent(child, out, 'anywhere'), join(dir, 'outside.vhdx'));
    assert.throws(() => resolveParent(child, loc({ relative_path: '.\\gone.vhdx' }), 'anywhere'), (e: unknown) => e instanceof DiskError && e.code === 'ENOENT' && /gone\.vhdx/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
