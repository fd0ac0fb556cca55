// cp and ls as a person meets them: a cancelled copy leaves nothing behind, the image is never changed, and
// mistakes (a missing path, a missing partition, '..', a folder given to a file system we do not read) are one
// plain line and exit 1.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { assertPlainError, dwOk, must, scratch } from '../helpers';
import { copyOut } from '../../src-main/services/inside';
import { DiskError } from '../../src-main/block/errors';

const s = scratch('dw-inside-cp-');
const disk = s.path('disk.raw');
const fat = s.path('fat.fs');
const hash = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
let before1 = '';

before(() => {
  must('truncate', ['-s', '60M', disk]);
  must('sfdisk', ['-q', disk], { input: Buffer.from('label: dos\n,40M,c\n,,83\n') });
  must('truncate', ['-s', '40M', fat]);
  must('mkfs.vfat', ['-F', '32', fat]);
  mkdirSync(s.path('src'));
  writeFileSync(s.path('src/big.bin'), Buffer.alloc(20 << 20, 0x5a));
  must('mcopy', ['-i', fat, s.path('src/big.bin'), '::/']);
  must('dd', [`if=${fat}`, `of=${disk}`, 'bs=1M', 'seek=1', 'conv=notrunc', 'status=none']);
  before1 = hash(disk);
});
after(() => s.cleanup());

test('a cancelled copy rejects with ECANCELLED and leaves no file, not even a temporary one', async () => {
  const out = s.path('out');
  mkdirSync(out);
  const ctl = new AbortController();
  await assert.rejects(
    copyOut({ path: disk, partition: 1, inner: '/big.bin', dest: out, signal: ctl.signal, onProgress: (done) => done > 0 && ctl.abort() }),
    (e: unknown) => e instanceof DiskError && e.code === 'ECANCELLED',
  );
  assert.deepEqual(readdirSync(out), []);
  const r = await copyOut({ path: disk, partition: 1, inner: '/big.bin', dest: out });
  assert.equal(r.files, 1);
  assert.ok(readFileSync(s.path('out/big.bin')).equals(readFileSync(s.path('src/big.bin'))));
});

test('plain one-line errors for a missing path, a missing partition, a climb out of the root, an unreadable file system', () => {
  assertPlainError(['ls', `${disk}:1:/nope`], /no such file/);
  assertPlainError(['ls', `${disk}:9:/`], /no partition 9/);
  assertPlainError(['ls', `${disk}:1:/../etc`], /'\.\.' is not allowed/);
  assertPlainError(['ls', `${disk}:2:/`], /no file system diskwright can read/);
  assertPlainError(['cp', `${disk}:1:/big.bin`, s.path('no/such/folder/x')], /does not exist/);
});

test('the image is never changed by partitions, ls or cp', () => {
  dwOk(['partitions', disk]);
  dwOk(['ls', `${disk}:1:/`]);
  dwOk(['cp', `${disk}:1:/`, s.path('whole')]);
  assert.ok(existsSync(s.path('whole/big.bin')));
  assert.equal(hash(disk), before1);
});
