/**
 * The descriptor text edits (descriptor.ts) touch only the lines they concern: VMware's descriptors (CRLF line
 * ends, the parent hint placed elsewhere, comments, ddb lines) keep everything else byte for byte. The layout
 * against qemu-img's own descriptors is proven in test/interop/vmdk-chain.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DiskError } from '../../src-main/block/errors';
import { checkParentName, withCid, withParent } from '../../src-main/formats/vmdk/descriptor';
import { parseDescriptor } from '../../src-main/formats/vmdk/layout';

const QEMU = '# Disk DescriptorFile\nversion=1\nCID=1a2b\nparentCID=ffffffff\ncreateType="monolithicSparse"\n\n# Extent description\nRW 8 SPARSE "a.vmdk"\n';

test('withParent fills the empty line qemu leaves after createType, and empties it again for no parent', () => {
  const t = withParent(QEMU, 'base.vmdk', 0xabc);
  assert.equal(t, QEMU.replace('parentCID=ffffffff', 'parentCID=abc').replace('"monolithicSparse"\n\n', '"monolithicSparse"\nparentFileNameHint="base.vmdk"\n'));
  const d = parseDescriptor(t, 'x');
  assert.equal(d.parentFileNameHint, 'base.vmdk');
  assert.equal(d.parentCid, 0xabc);
  assert.equal(withParent(t, undefined, 0xffffffff), QEMU);
});

test('a VMware descriptor: CRLF kept, the hint replaced where it stands, other lines untouched', () => {
  const vmw = '# Disk DescriptorFile\r\nversion=1\r\nencoding="UTF-8"\r\nCID=fffffffe\r\nparentCID=12345678\r\nisNativeSnapshot="no"\r\ncreateType="monolithicSparse"\r\nparentFileNameHint="old parent.vmdk"\r\n\r\n# Extent description\r\nRW 8 SPARSE "c.vmdk"\r\n\r\nddb.longContentID = "abc"\r\n';
  const t = withParent(vmw, 'new.vmdk', 0x42);
  assert.equal(t, vmw.replace('parentCID=12345678', 'parentCID=42').replace('"old parent.vmdk"', '"new.vmdk"'));
  assert.equal(withCid(t, 0x99), t.replace('CID=fffffffe', 'CID=99'));
});

test('a descriptor without parentCID or an empty line gets both inserted after CID and createType', () => {
  const bare = 'version=1\nCID=5\ncreateType="vmfs"\nRW 8 VMFS "x-flat.vmdk"\n';
  assert.equal(withParent(bare, 'p.vmdk', 7), 'version=1\nCID=5\nparentCID=7\ncreateType="vmfs"\nparentFileNameHint="p.vmdk"\nRW 8 VMFS "x-flat.vmdk"\n');
});

test('parent names a descriptor line cannot hold are refused plainly', () => {
  for (const bad of ['', 'a"b', 'a\nb', 'x'.repeat(5000)]) assert.throws(() => checkParentName(bad, 'img.vmdk'), (e: unknown) => e instanceof DiskError && e.code === 'EINVAL');
  checkParentName('sub dir/base.vmdk', 'img.vmdk');
});
