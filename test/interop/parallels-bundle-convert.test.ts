/**
 * `convert -O parallels` into a target named .hdd gives a Parallels Desktop bundle (DiskDescriptor.xml and
 * its expanding image), written under a temporary name and renamed into place whole: qemu-img reads the
 * bundle's image as the source's content, and a failed convert leaves no folder behind.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { dw, dwOk, must, qemuIo, run, scratch } from '../helpers';

test('convert into NAME.hdd makes a bundle qemu-img reads as the source; create -f parallels NAME.hdd too', (t) => {
  const s = scratch();
  t.after(s.cleanup);
  const src = s.path('src.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', src, '32M']);
  qemuIo(src, 'raw', ['write -P 0x42 1M 2M', 'write -P 0x43 20M 1M']);
  dwOk(['convert', '-O', 'parallels', src, s.path('vm.hdd')]);
  const files = readdirSync(s.path('vm.hdd')).sort();
  assert.deepEqual(files, ['DiskDescriptor.xml', 'vm.hdd.0.{5fbaabe3-6958-40ff-92a7-860e329aab41}.hds']);
  const image = join(s.path('vm.hdd'), files[1]);
  assert.equal(run('qemu-img', ['compare', '-f', 'raw', '-F', 'parallels', src, image]).status, 0);
  assert.equal(run('qemu-img', ['check', image]).status, 0);
  assert.match(dwOk(['compare', src, s.path('vm.hdd')]).stdout, /Images are identical/);
  dwOk(['create', '-f', 'parallels', s.path('empty.hdd'), '64M']);
  assert.match(dwOk(['info', s.path('empty.hdd')]).stdout, /virtual size: 64 MiB[\s\S]*subformat: bundle/);
  // A failing convert (a cluster size qemu refuses) leaves no bundle folder and no temporary behind.
  assert.notEqual(dw(['convert', '-O', 'parallels', '-o', 'cluster_size=3', src, s.path('bad.hdd')]).status, 0);
  assert.ok(!readdirSync(s.dir).some((n) => n.includes('bad.hdd')));
});
