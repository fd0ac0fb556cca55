// ext layouts beyond the defaults, each against dumpe2fs (used bytes, free block lists) and the tree put in by
// mke2fs -d: meta_bg (descriptor blocks spread over the groups, no reserved GDT blocks), 4 KiB blocks without
// flex_bg, and the htree-free ext2 of 1 KiB blocks with many groups. bigalloc is refused by name for the free map.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { scratch, dwOk, must } from '../helpers';
import { assertSameTree, dumpe2fs, makeExt, makeTree } from './inside-common';
import { openVolume } from '../../src-main/inside';
import { openImage } from '../../src-main/registry';
import { DiskError } from '../../src-main/block/errors';

const s = scratch('dw-inside-ext-');
const tree = s.path('tree');
before(() => void makeTree(tree, 99, 80, { symlink: true, bigFiles: 2 }));
after(() => s.cleanup());

async function freeOf(path: string) {
  const dev = await openImage(path, { readOnly: true, backingPolicy: 'none' });
  try {
    const { fs } = await openVolume(dev);
    return { used: fs.info.used, free: await fs.freeRanges() };
  } finally {
    await dev.close();
  }
}

const layouts: Array<[string, string, string[]]> = [
  ['meta_bg, 1 KiB blocks, 64 MiB (several descriptor blocks)', '64M', ['-t', 'ext4', '-b', '1024', '-O', 'meta_bg,^resize_inode']],
  ['4 KiB blocks without flex_bg', '48M', ['-t', 'ext4', '-b', '4096', '-O', '^flex_bg']],
  ['ext2 without sparse_super', '24M', ['-t', 'ext2', '-b', '1024', '-O', '^sparse_super,^resize_inode']],
];

for (const [name, size, opts] of layouts) {
  test(`${name}: used and free ranges equal dumpe2fs; files equal`, async () => {
    const p = s.path(`${size}-${opts.join('')}.ext`.replace(/[^\w.-]/g, '_'));
    makeExt(p, tree, size, opts);
    const d = dumpe2fs(p);
    const got = await freeOf(p);
    assert.equal(got.used, d.used);
    assert.deepEqual(got.free, d.free);
    const out = s.path(`out-${size}`);
    dwOk(['cp', `${p}:/`, out]);
    assertSameTree(tree, out, ['lost+found']);
  });
}

test('bigalloc: identified, files listed, the free map refused by name', async () => {
  const p = s.path('bigalloc.ext');
  must('mke2fs', ['-q', '-F', '-t', 'ext4', '-O', 'bigalloc', '-C', '16384', p, '64M']);
  const dev = await openImage(p, { readOnly: true, backingPolicy: 'none' });
  try {
    const { fs } = await openVolume(dev);
    assert.equal(fs.info.type, 'ext4');
    assert.equal(fs.info.used, dumpe2fs(p).used);
    assert.ok((await fs.list('/')).some((e) => e.name === 'lost+found'));
    await assert.rejects(fs.freeRanges(), (e: unknown) => e instanceof DiskError && /bigalloc/.test(e.message));
  } finally {
    await dev.close();
  }
});
