/** The Inspect title of an image: its file name, or a Parallels bundle's folder name (not "DiskDescriptor.xml"). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { imageTitle } from '../../src-renderer/text';

test('a Parallels bundle is titled by its folder, other images by their file name', () => {
  assert.equal(imageTitle('/vm/win10.hdd/DiskDescriptor.xml'), 'win10.hdd');
  assert.equal(imageTitle('C:\\vms\\win10.hdd\\DiskDescriptor.xml'), 'win10.hdd');
  assert.equal(imageTitle('/vm/disk.qcow2'), 'disk.qcow2');
  assert.equal(imageTitle('DiskDescriptor.xml'), 'DiskDescriptor.xml');
});
