/**
 * The grant shape of BackingPolicy: a backing file outside an image's folder is followed only for the exact
 * image → backing pair the user allowed; the three older shapes behave as before.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BackingGrants, resolveBackingPath } from '../../src-main/block/backing-path';
import { DiskError } from '../../src-main/block/errors';
import { ARG_SCHEMAS, parseArgs } from '../../src-main/api/schemas';

const isOutside = (e: unknown) => e instanceof DiskError && e.code === 'EOUTSIDE';

test('a grant allows exactly one image to follow exactly one backing file outside its folder', () => {
  const grants = new BackingGrants();
  const refuse = grants.policy('refuse');
  assert.throws(() => resolveBackingPath('/vm/a/overlay.qcow2', '/other/base.qcow2', refuse), isOutside);

  grants.grant('/vm/a/overlay.qcow2', '/other/base.qcow2');
  assert.equal(resolveBackingPath('/vm/a/overlay.qcow2', '/other/base.qcow2', refuse), '/other/base.qcow2');
  // The same file named relatively is the same file.
  assert.equal(resolveBackingPath('/vm/a/overlay.qcow2', '../../other/base.qcow2', refuse), '/other/base.qcow2');
  // Another backing file for the same image, a file beside the granted one, the granted file's folder:
  assert.throws(() => resolveBackingPath('/vm/a/overlay.qcow2', '/other/base2.qcow2', refuse), isOutside);
  assert.throws(() => resolveBackingPath('/vm/a/overlay.qcow2', '/other', refuse), isOutside);
  assert.throws(() => resolveBackingPath('/vm/a/overlay.qcow2', '/other/base.qcow2/x', refuse), isOutside);
  // The granted file for another image, even one in the same folder:
  assert.throws(() => resolveBackingPath('/vm/a/overlay2.qcow2', '/other/base.qcow2', refuse), isOutside);
  assert.throws(() => resolveBackingPath('/vm/b/overlay.qcow2', '/other/base.qcow2', refuse), isOutside);
  // Inside the folder nothing needs a grant.
  assert.equal(resolveBackingPath('/vm/a/overlay.qcow2', 'base.qcow2', refuse), '/vm/a/base.qcow2');
  assert.equal(resolveBackingPath('/vm/a/overlay.qcow2', 'sub/base.qcow2', refuse), '/vm/a/sub/base.qcow2');
});

test('the image path of a grant is compared resolved, and a policy sees grants made after it was handed out', () => {
  const grants = new BackingGrants();
  const cut = grants.policy('cut');
  assert.equal(grants.allows('/vm/a/overlay.qcow2', '/other/base.qcow2'), false);
  grants.grant('/vm/a/../a/./overlay.qcow2', '/other//base.qcow2');
  assert.equal(grants.allows('/vm/a/overlay.qcow2', '/other/base.qcow2'), true);
  assert.equal(cut.allows('/vm/a/overlay.qcow2', '/other/base.qcow2'), true);
  assert.equal(resolveBackingPath('/vm/a/overlay.qcow2', '/other/base.qcow2', cut), '/other/base.qcow2');
  // A fresh set of grants (a new launch) knows nothing of the old one.
  assert.throws(() => resolveBackingPath('/vm/a/overlay.qcow2', '/other/base.qcow2', new BackingGrants().policy('refuse')), isOutside);
});

test("the string policies are unchanged: 'inside-folder' refuses, 'anywhere' and 'none' resolve", () => {
  assert.throws(() => resolveBackingPath('/vm/a/overlay.qcow2', '/other/base.qcow2', 'inside-folder'), (e: unknown) => {
    assert.ok(isOutside(e));
    assert.equal((e as DiskError).path, '/other/base.qcow2');
    assert.match((e as DiskError).message, /^\/vm\/a\/overlay\.qcow2: its backing file \/other\/base\.qcow2 lies outside/);
    return true;
  });
  assert.equal(resolveBackingPath('/vm/a/overlay.qcow2', 'base.qcow2', 'inside-folder'), '/vm/a/base.qcow2');
  assert.equal(resolveBackingPath('/vm/a/overlay.qcow2', '/other/base.qcow2', 'anywhere'), '/other/base.qcow2');
  assert.equal(resolveBackingPath('/vm/a/overlay.qcow2', '../x.qcow2', 'none'), '/vm/x.qcow2');
});

test('allowBackingPath takes two paths, nothing else', () => {
  assert.ok(ARG_SCHEMAS.allowBackingPath);
  assert.deepEqual(parseArgs('allowBackingPath', ['/a/o.qcow2', '/b/base.qcow2']), ['/a/o.qcow2', '/b/base.qcow2']);
  const einval = (re: RegExp) => (e: unknown) => e instanceof DiskError && e.code === 'EINVAL' && re.test(e.message);
  assert.throws(() => parseArgs('allowBackingPath', ['/a/o.qcow2']), einval(/^allowBackingPath: /));
  assert.throws(() => parseArgs('allowBackingPath', ['/a/o.qcow2', '/b/base.qcow2', '/c']), einval(/too many arguments/));
  assert.throws(() => parseArgs('allowBackingPath', ['/a/o.qcow2', '']), einval(/the path is empty \(argument 2\)/));
  assert.throws(() => parseArgs('allowBackingPath', ['/a/o.qcow2', 'x\0y']), einval(/NUL/));
  assert.throws(() => parseArgs('allowBackingPath', [{}, '/b/base.qcow2']), einval(/a path must be text \(argument 1\)/));
  assert.throws(() => parseArgs('allowBackingPath', '/a/o.qcow2'), einval(/must be a list/));
});
