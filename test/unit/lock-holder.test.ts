/**
 * One lock description per image in this process: opens of the same image that race (the app reads an image's
 * map, its snapshot space and its facts at once) must share it, or the second description's read locks would
 * refuse this process's own writer as if another program held the image.
 */
import { test, after } from 'node:test';
import { statSync, writeFileSync } from 'node:fs';
import { lockImage, lockingAvailable } from '../../src-main/block/lock';
import { scratch } from '../helpers';

const s = scratch('dw-lock-holder-');
after(() => s.cleanup());

test('readers opening the same image at once do not refuse its writer', { skip: !lockingAvailable() && 'no native helper: no locks' }, async () => {
  const path = s.path('img.raw');
  writeFileSync(path, Buffer.alloc(4096));
  const st = statSync(path);
  const readers = await Promise.all(Array.from({ length: 8 }, () => lockImage(path, st.dev, st.ino, 'read')));
  const writer = await lockImage(path, st.dev, st.ino, 'write');
  await writer.release();
  for (const r of readers) await r.release();
  // With every user gone the image is free for another program: a fresh write lock is taken again.
  const again = await lockImage(path, st.dev, st.ino, 'write');
  await again.release();
});
