/**
 * VHDs we make and write, judged by qemu-img and 7-Zip:
 * - create: the virtual size and the file length equal `qemu-img create -f vpc`'s for the same arguments (CHS
 *   rounding across the geometry's bands, force_size, fixed and dynamic), and the bytes are qemu's but for the
 *   fields that are unique per image (unique id, time stamp, checksum);
 * - writes (ours, then qemu-io's on top) read identically by qemu-img compare against a raw model, by 7-Zip, and
 *   by us; convert from raw to dynamic, fixed and force_size images likewise. qemu-img has no check for vpc
 *   ("does not support checks"), so our check must find them clean.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, ftruncateSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { dw, dwOk, must, run, scratch, seededRandom } from '../helpers';
import { assert7zipReads, assertQemuCompares, io, qemuInfo } from './vpc-common';

const s = scratch('dw-vpc-cw-');
after(() => s.cleanup());

const SIZES = ['1M', '10M', '100M', '127M', '1000M', '12345678', '130G', '1000G'];

for (const size of SIZES) {
  for (const opts of ['subformat=dynamic', 'subformat=dynamic,force_size=on', 'subformat=fixed', 'subformat=fixed,force_size=on']) {
    // Fixed images are sparse files of the disk's size: the largest are left to the dynamic cases.
    if (opts.includes('fixed') && /G$/.test(size)) continue;
    test(`create -o ${opts} ${size}: the size and file length qemu-img create gives`, () => {
      const q = s.path('q.vhd');
      const o = s.path('o.vhd');
      must('qemu-img', ['create', '-q', '-f', 'vpc', '-o', opts, q, size]);
      dwOk(['create', '-q', '-f', 'vpc', '-o', opts, o, size]);
      const qi = qemuInfo(q);
      const oi = qemuInfo(o);
      assert.equal(oi['virtual-size'], qi['virtual-size'], 'virtual size');
      assert.equal(statSync(o).size, statSync(q).size, 'file length');
      const ours = JSON.parse(dwOk(['info', '-f', 'vpc', '--output', 'json', o]).stdout);
      assert.equal(ours['virtual-size'], qi['virtual-size'], 'our info reads the size qemu reads');
      if (statSync(q).size <= 64 * 1024 * 1024) {
        // Byte for byte qemu's, but for the unique id (68..84), the time stamp (24..28) and the checksum (64..68).
        const mask = (b: Buffer) => {
          for (let at = 0; at < b.length; at += 512) {
            if (b.toString('latin1', at, at + 8) !== 'conectix') continue;
            b.fill(0, at + 24, at + 28);
            b.fill(0, at + 64, at + 84);
          }
          return b;
        };
        assert.ok(mask(readFileSync(o)).equals(mask(readFileSync(q))), 'the same bytes as qemu-img create');
      }
    });
  }
}

test('a size qemu refuses is refused: past 2040 GiB', () => {
  const r = dw(['create', '-f', 'vpc', '-o', 'force_size=on', s.path('huge.vhd'), '2041G']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /2040 GiB/);
  assert.notEqual(run('qemu-img', ['create', '-f', 'vpc', '-o', 'force_size=on', s.path('huge-q.vhd'), '2041G']).status, 0);
});

function payload(seed: number, n: number): Buffer {
  const r = seededRandom(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (r() * 256) | 0;
  return b;
}

for (const opts of ['subformat=dynamic', 'subformat=fixed', 'subformat=dynamic,force_size=on']) {
  test(`ours (${opts}): create, write, qemu-io on top: qemu-img compare, 7-Zip and our check agree with a raw model`, () => {
    const img = s.path('w.vhd');
    const model = s.path('w-model.raw');
    dwOk(['create', '-q', '-f', 'vpc', '-o', opts, img, '24M']);
    const size = Number(JSON.parse(dwOk(['info', '-f', 'vpc', '--output', 'json', img]).stdout)['virtual-size']);
    const m = Buffer.alloc(size);
    const writes: Array<[number, number]> = [
      [0, 4096],
      [1000, 7000],
      [2 * 1024 * 1024 - 700, 1400], // across a block boundary
      [5 * 1024 * 1024, 3 * 1024 * 1024 + 17],
      [size - 512, 512], // the last sector
      [17 * 1024 * 1024 + 3, 1],
    ];
    writes.forEach(([at, n], i) => {
      const p = payload(i + 1, n);
      writeFileSync(s.path('p.bin'), p);
      dwOk(['write', '-f', 'vpc', img, String(at), s.path('p.bin')]);
      p.copy(m, at);
    });
    writeFileSync(model, m);
    assertQemuCompares(img, model);
    assert7zipReads(img, m, opts);
    const c = dw(['check', '-f', 'vpc', '--output', 'json', img]);
    assert.equal(c.status, 0, c.stdout + c.stderr);
    const q = run('qemu-img', ['check', '-f', 'vpc', img]);
    assert.match(q.stderr, /does not support checks/, 'qemu-img has no check for vpc');
    // qemu writes on top of ours; we read what qemu reads.
    io(img, ['write -P 0x7e 3M 1M', 'write -P 0x7f 11M 4k']);
    m.fill(0x7e, 3 * 1024 * 1024, 4 * 1024 * 1024);
    m.fill(0x7f, 11 * 1024 * 1024, 11 * 1024 * 1024 + 4096);
    writeFileSync(model, m);
    assertQemuCompares(img, model);
    dwOk(['convert', '-f', 'vpc', '-O', 'raw', img, s.path('w-ours.raw')]);
    assert.ok(readFileSync(s.path('w-ours.raw')).equals(m), 'we read what qemu wrote');
  });
}

for (const opts of ['subformat=dynamic', 'subformat=fixed', 'subformat=dynamic,force_size=on', 'subformat=fixed,force_size=on']) {
  test(`convert raw -> vpc (${opts}): qemu-img compare and 7-Zip read the source's bytes; check is clean`, () => {
    const src = s.path('src.raw');
    const size = 20 * 1024 * 1024 + 4096; // not a CHS size: rounded up, or kept with force_size
    const b = Buffer.alloc(size);
    payload(99, 1024 * 1024).copy(b, 0);
    payload(98, 300 * 1024).copy(b, 9 * 1024 * 1024 + 512);
    b.fill(0x5c, size - 8192);
    writeFileSync(src, b);
    const out = s.path('conv.vhd');
    dwOk(['convert', '-f', 'raw', '-O', 'vpc', '-o', opts, src, out]);
    const vs = Number(qemuInfo(out)['virtual-size']);
    if (opts.includes('force_size')) assert.equal(vs, size);
    else assert.ok(vs >= size, 'rounded up, never cut');
    const padded = Buffer.concat([b, Buffer.alloc(vs - size)]);
    writeFileSync(s.path('padded.raw'), padded);
    assertQemuCompares(out, s.path('padded.raw'));
    assert7zipReads(out, padded, opts);
    assert.equal(dw(['check', '-f', 'vpc', out]).status, 0);
    // The same conversion by qemu-img gives the same length (the same blocks allocated).
    must('qemu-img', ['convert', '-f', 'raw', '-O', 'vpc', '-o', opts, src, s.path('conv-q.vhd')]);
    assert.equal(statSync(out).size, statSync(s.path('conv-q.vhd')).size, 'file length as qemu-img convert');
    if (opts.includes('dynamic')) {
      // And the same space: the zeros of a block that holds some data stay holes in the file, as qemu-img leaves
      // them (writing each 2 MiB block whole took 16x qemu-img's space for sparse data).
      const used = (f: string) => statSync(f).blocks * 512;
      assert.ok(Math.abs(used(out) - used(s.path('conv-q.vhd'))) <= 64 * 1024, `space used ${used(out)} where qemu-img's uses ${used(s.path('conv-q.vhd'))}`);
    }
  });
}

test('measure: the figures are the file lengths create and convert give', () => {
  const src = s.path('m.raw');
  // A sparse source: measure counts the blocks its data touches (holes are not data).
  const fd = openSync(src, 'w');
  ftruncateSync(fd, 30 * 1024 * 1024);
  writeSync(fd, Buffer.alloc(4096, 1), 0, 4096, 0);
  writeSync(fd, Buffer.alloc(2 * 1024 * 1024 + 1, 2), 0, 2 * 1024 * 1024 + 1, 13 * 1024 * 1024);
  closeSync(fd);
  for (const opts of ['subformat=dynamic', 'subformat=fixed']) {
    const m = JSON.parse(dwOk(['measure', '--output', 'json', '-O', 'vpc', '-o', opts, src]).stdout);
    const out = s.path(`m-${opts}.vhd`);
    dwOk(['convert', '-O', 'vpc', '-o', opts, src, out]);
    assert.equal(m.required, statSync(out).size, `${opts}: required`);
    if (opts.includes('fixed')) assert.equal(m['fully-allocated'], statSync(out).size);
  }
});
