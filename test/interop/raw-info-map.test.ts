/**
 * Raw images made by qemu-img and qemu-io: `diskwright info` (format, virtual size, actual size) and
 * `diskwright map --output json` against qemu-img's, run back to back on the same file.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { dwOk, must, scratch } from '../helpers';
import { RAW_CASES } from './raw-common';

const s = scratch('dw-raw-info-');
after(() => s.cleanup());

RAW_CASES.forEach((c, i) => {
  test(`raw ${c.name}: info and map match qemu-img`, () => {
    const p = s.path(`img${i}.raw`);
    c.make(p);
    const q = JSON.parse(must('qemu-img', ['info', '--output', 'json', p]).stdout);
    const o = JSON.parse(dwOk(['info', '--output', 'json', p]).stdout);
    assert.equal(o.format, 'raw');
    assert.equal(o.format, q.format);
    assert.equal(o['virtual-size'], q['virtual-size'], 'virtual-size');
    assert.equal(o['actual-size'], q['actual-size'], 'actual-size');
    assert.equal(o['dirty-flag'], q['dirty-flag']);
    // -f raw and probing agree
    assert.equal(JSON.parse(dwOk(['info', '-f', 'raw', '--output', 'json', p]).stdout)['virtual-size'], o['virtual-size']);

    const qm = JSON.parse(must('qemu-img', ['map', '--output', 'json', p]).stdout);
    const om = JSON.parse(dwOk(['map', '--output', 'json', p]).stdout);
    assert.deepEqual(om, qm, 'map --output json');
  });
});

test('raw info in human form names the format and size like qemu-img', () => {
  const p = s.path('human.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', p, '3M']);
  const q = must('qemu-img', ['info', p]).stdout;
  const o = dwOk(['info', p]).stdout;
  const line = (text: string, key: string) => text.split('\n').find((l) => l.startsWith(key));
  assert.equal(line(o, 'file format:'), line(q, 'file format:'));
  assert.equal(line(o, 'virtual size:'), line(q, 'virtual size:'));
});
