/**
 * The folder policy is decided on the real path a name reaches, and the file then opened must be that file: a
 * link swapped in between the check and the open (of the file itself, or of a folder on the way) is refused
 * (issue 26 item 1). Real files in a scratch folder; the swap is done by the test between the two steps.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, realpathSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolveBackingPath } from '../../src-main/block/backing-path';
import { ImageFile, openingChecked } from '../../src-main/block/file';
import { DiskError } from '../../src-main/block/errors';
import { scratch } from '../helpers';

const isOutside = (e: unknown) => e instanceof DiskError && e.code === 'EOUTSIDE';

function folders(t: { after: (f: () => void) => void }) {
  const s = scratch('dw-landing-');
  t.after(s.cleanup);
  const root = realpathSync(s.dir);
  const vm = join(root, 'vm');
  const elsewhere = join(root, 'elsewhere');
  mkdirSync(vm);
  mkdirSync(elsewhere);
  writeFileSync(join(elsewhere, 'secret.raw'), 'secret');
  return { vm, elsewhere };
}

test('a backing name that is a link out of the folder is outside; a link within it is inside, by its real path', (t) => {
  const { vm, elsewhere } = folders(t);
  symlinkSync(join(elsewhere, 'secret.raw'), join(vm, 'base.raw'));
  assert.throws(() => resolveBackingPath(join(vm, 'o.qcow2'), 'base.raw', 'inside-folder'), (e: unknown) => {
    assert.ok(isOutside(e));
    assert.equal((e as DiskError).path, join(elsewhere, 'secret.raw'), 'the refusal names the file reached (the pair a grant is made for)');
    assert.match((e as DiskError).message, /a link to/);
    return true;
  });
  // A folder on the way that is a link out counts too.
  symlinkSync(elsewhere, join(vm, 'sub'));
  assert.throws(() => resolveBackingPath(join(vm, 'o.qcow2'), 'sub/secret.raw', 'inside-folder'), isOutside);
  // A link that stays inside is followed, and the real path is what gets opened.
  writeFileSync(join(vm, 'real.raw'), 'base');
  symlinkSync('real.raw', join(vm, 'alias.raw'));
  assert.equal(resolveBackingPath(join(vm, 'o.qcow2'), 'alias.raw', 'inside-folder'), join(vm, 'real.raw'));
  // 'anywhere' (the CLI) decides nothing and keeps the name as qemu-img does.
  assert.equal(resolveBackingPath(join(vm, 'o.qcow2'), 'base.raw', 'anywhere'), join(vm, 'base.raw'));
});

test('a file swapped for a link after the check is refused when it is opened', async (t) => {
  const { vm, elsewhere } = folders(t);
  writeFileSync(join(vm, 'base.raw'), 'base');
  const checked = resolveBackingPath(join(vm, 'o.qcow2'), 'base.raw', 'inside-folder');
  assert.equal(checked, join(vm, 'base.raw'));
  // Unchanged, it opens.
  const f = await openingChecked(checked, () => ImageFile.open(checked, false));
  await f.close();
  // The swap.
  renameSync(join(vm, 'base.raw'), join(vm, 'moved.raw'));
  symlinkSync(join(elsewhere, 'secret.raw'), join(vm, 'base.raw'));
  await assert.rejects(openingChecked(checked, () => ImageFile.open(checked, false)), isOutside);
  await assert.rejects(openingChecked(checked, () => ImageFile.open(checked, true)), isOutside);
  // Outside openingChecked the same open follows the link (a top image the user named is theirs to name).
  const plain = await ImageFile.open(checked, false);
  await plain.close();
});

test('a folder on the way swapped for a link after the check is refused when the file is opened', async (t) => {
  const { vm, elsewhere } = folders(t);
  mkdirSync(join(vm, 'disks'));
  writeFileSync(join(vm, 'disks', 'secret.raw'), 'base');
  const checked = resolveBackingPath(join(vm, 'o.qcow2'), 'disks/secret.raw', 'inside-folder');
  renameSync(join(vm, 'disks'), join(vm, 'disks.old'));
  symlinkSync(elsewhere, join(vm, 'disks'));
  await assert.rejects(openingChecked(checked, () => ImageFile.open(checked, false)), isOutside);
});
