/**
 * One validation of the qcow2 header for every command: a damaged header is refused by info, check, map and
 * convert alike, as qemu-img refuses to open it for any of them (before, info and check passed some of these
 * while map refused them, and the other way round). A qcow version 1 file is named, not read as raw.
 */
import assert from 'node:assert/strict';
import { closeSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { after, test } from 'node:test';
import { dw, must, run, scratch } from '../helpers';

const work = scratch('dw-hdr-');
after(work.cleanup);

function damaged(name: string, at: number, bytes: number[]): string {
  const img = work.path(`${name}.qcow2`);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '16M']);
  const fd = openSync(img, 'r+');
  writeSync(fd, Buffer.from(bytes), 0, bytes.length, at);
  closeSync(fd);
  return img;
}

const cases: Array<{ name: string; at: number; bytes: number[]; says: RegExp }> = [
  { name: 'crypt-method-ffffffff', at: 32, bytes: [0xff, 0xff, 0xff, 0xff], says: /unknown encryption method 4294967295/ },
  { name: 'compression-type-7', at: 104, bytes: [7], says: /compression type field \(7\) disagrees/ },
  { name: 'nb-snapshots-65536', at: 60, bytes: [0, 1, 0, 0], says: /snapshot/ },
];

for (const c of cases) {
  test(`${c.name}: info, check, map and convert all refuse it in one plain line, as qemu-img does`, () => {
    const img = damaged(c.name, c.at, c.bytes);
    assert.equal(run('qemu-img', ['info', img]).status, 1, 'qemu-img refuses it');
    for (const args of [['info', img], ['check', img], ['map', img], ['convert', '-O', 'raw', img, work.path(`${c.name}.raw`)]]) {
      const r = dw(args);
      assert.equal(r.status, 1, `${args[0]}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, c.says, args[0]);
      assert.equal(r.stderr.trim().split('\n').length, 1, `${args[0]}: one line`);
    }
  });
}

test('a qcow version 1 file is refused by name, not opened as raw', () => {
  const img = work.path('old.qcow');
  const head = Buffer.alloc(65536);
  head.write('QFI\xfb', 0, 'latin1');
  head.writeUInt32BE(1, 4);
  writeFileSync(img, head);
  const r = dw(['info', img]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /qcow version 1 \(the original QEMU format\) is not supported/);
});
