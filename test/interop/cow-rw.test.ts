/**
 * UML COW data against the UML tools: files from uml_mkcow whose bitmap and data are set by hand (not by our
 * writer) read here as uml_moo merges them; files written here (over uml_mkcow's files and our own, v3 and v2)
 * merge under uml_moo to the bytes the same writes give on a raw copy of the backing file; our create writes
 * the bytes uml_mkcow writes for the same backing file.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, openSync, closeSync, readFileSync, statSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { dw, dwOk, must, scratch, seededRandom } from '../helpers';
import { openImage } from '../../src-main/registry';
import { cowSizes, serializeHeader, type CowLayout } from '../../src-main/formats/cow/layout';

const s = scratch('dw-cow-rw-');
after(() => { if (!process.env.KEEP) s.cleanup(); else console.log(s.dir); });

/** A backing file of `size` bytes: random data with zero stretches (so zero sectors over zero backing occur). */
function makeBacking(path: string, size: number, seed: number): void {
  const rnd = seededRandom(seed);
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4096) if (rnd() < 0.6) for (let j = i; j < Math.min(size, i + 4096); j++) b[j] = (rnd() * 256) | 0;
  writeFileSync(path, b);
}

/** Applies seeded writes (unaligned, some zero-filled, some crossing the end) to the COW file through our driver and to `mirror`. */
async function applyWrites(cow: string, mirror: Buffer, seed: number, count: number): Promise<void> {
  const rnd = seededRandom(seed);
  const dev = await openImage(cow, { readOnly: false, backingPolicy: 'anywhere' });
  try {
    assert.equal(dev.size, mirror.length);
    for (let i = 0; i < count; i++) {
      const len = 1 + Math.floor(rnd() * (rnd() < 0.3 ? 300 : 20000));
      const off = i === 0 ? mirror.length - Math.min(len, mirror.length) : Math.floor(rnd() * (mirror.length - len));
      const data = Buffer.alloc(len);
      if (rnd() < 0.7) for (let j = 0; j < len; j++) data[j] = (rnd() * 256) | 0;
      if (rnd() < 0.2) {
        data.fill(0);
        await dev.writeZeroes(off, len);
      } else await dev.write(off, data);
      data.copy(mirror, off);
    }
    await dev.flush();
  } finally {
    await dev.close();
  }
}

/** Our read of the whole disk (convert -O raw through the CLI). */
function oursRaw(cow: string): Buffer {
  const out = cow + '.ours.raw';
  dwOk(['convert', '-O', 'raw', cow, out]);
  return readFileSync(out);
}

/** uml_moo's merge into a new file. */
function mooRaw(cow: string): Buffer {
  const out = cow + '.moo.raw';
  must('uml_moo', [cow, out]);
  return readFileSync(out);
}

test('uml_mkcow files with bits and data set by hand read as uml_moo merges them (v3, 1 MiB and 1000000 bytes)', () => {
  for (const size of [1 << 20, 1000000]) {
    const back = s.path(`hand-back-${size}.img`);
    makeBacking(back, size, size);
    const cow = s.path(`hand-${size}.cow`);
    must('uml_mkcow', [cow, back]);
    // Set sectors straight in the file: bitmap at 8192 (LSB first), data at data_offset + sector * 512.
    const dataOffset = statSync(cow).size - size;
    const fd = openSync(cow, 'r+');
    const rnd = seededRandom(7);
    const sectors = Math.ceil(size / 512);
    const chosen = new Set<number>([0, 7, 8, sectors - 1]);
    while (chosen.size < 200) chosen.add(Math.floor(rnd() * sectors));
    const bitmap = Buffer.alloc(Math.ceil(sectors / 8));
    for (const i of chosen) {
      bitmap[i >> 3] |= 1 << (i & 7);
      const sector = Buffer.alloc(512, i % 5 === 0 ? 0 : 0x30 + (i % 64));
      writeSync(fd, sector, 0, Math.min(512, size - i * 512), dataOffset + i * 512);
    }
    writeSync(fd, bitmap, 0, bitmap.length, 8192);
    closeSync(fd);
    const moo = mooRaw(cow);
    const ours = oursRaw(cow);
    // uml_moo merges whole sectors only: compare what it wrote.
    assert.equal(moo.length, Math.floor(size / 512) * 512);
    assert.ok(ours.subarray(0, moo.length).equals(moo), `size ${size}: our read equals uml_moo's merge`);
    assert.equal(ours.length, Math.ceil(size / 512) * 512);
  }
});

test('written here over a uml_mkcow file: uml_moo merges to the same writes applied to a raw copy, our read agrees', async () => {
  const size = 2 << 20;
  const back = s.path('w-back.img');
  makeBacking(back, size, 3);
  const cow = s.path('w.cow');
  must('uml_mkcow', [cow, back]);
  const lengthBefore = statSync(cow).size;
  const mirror = readFileSync(back);
  await applyWrites(cow, mirror, 11, 60);
  assert.equal(statSync(cow).size, lengthBefore, 'writes stay inside the data area uml_mkcow laid out');
  assert.ok(mooRaw(cow).equals(mirror), 'uml_moo merge = expected bytes');
  assert.ok(oursRaw(cow).equals(mirror), 'our read = expected bytes');
  assert.ok(readFileSync(back).equals(readFileSync(s.path('w-back.img'))), 'the backing file is untouched');
});

for (const version of ['3', '2']) {
  test(`created here (version ${version}) and written here: uml_moo merges to the expected bytes`, async () => {
    const size = 1536 * 1024;
    const back = s.path(`c${version}-back.img`);
    makeBacking(back, size, 5);
    const backCopy = readFileSync(back);
    const cow = s.path(`c${version}.cow`);
    dwOk(['create', '-f', 'cow', '-o', `version=${version}`, '-b', back, cow]);
    const mirror = Buffer.from(backCopy);
    await applyWrites(cow, mirror, 20 + Number(version), 40);
    assert.ok(mooRaw(cow).equals(mirror), 'uml_moo merge = expected bytes');
    assert.ok(oursRaw(cow).equals(mirror), 'our read = expected bytes');
    assert.ok(readFileSync(back).equals(backCopy), 'the backing file is untouched');
    // The map: written sectors are data in the COW file, the rest the backing file's.
    const map = JSON.parse(dwOk(['map', '--output', 'json', cow]).stdout) as Array<{ start: number; length: number; depth: number }>;
    assert.equal(map.reduce((n, e) => n + e.length, 0), size);
    assert.ok(map.some((e) => e.depth === 0) && map.some((e) => e.depth === 1));
  });
}

test('create writes the bytes uml_mkcow writes: absolute, relative, through a symlinked folder, odd size', () => {
  const real = s.path('realdir');
  mkdirSync(real);
  symlinkSync(real, s.path('linkdir'));
  const cases: Array<[string, number]> = [
    [s.path('abs-back.img'), 1 << 20],
    ['rel-back.img', 65536],
    ['linkdir/linked-back.img', 4096 * 3],
    [s.path('odd-back.img'), 1000000],
  ];
  cases.forEach(([name, size], i) => {
    const full = name.startsWith('/') ? name : s.path(name);
    writeFileSync(full, Buffer.alloc(size, 0x5a));
    must('uml_mkcow', [`mk${i}.cow`, name], { cwd: s.dir });
    dwOk(['create', '-f', 'cow', '-b', name, `dw${i}.cow`], { cwd: s.dir });
    const a = readFileSync(s.path(`mk${i}.cow`));
    const b = readFileSync(s.path(`dw${i}.cow`));
    assert.equal(b.length, a.length, `${name}: file length`);
    assert.ok(b.equals(a), `${name}: bytes equal uml_mkcow's`);
  });
  // The symlinked folder is recorded by its real path, as uml_mkcow's chdir + getcwd does.
  assert.match(readFileSync(s.path('dw2.cow')).subarray(32, 32 + 200).toString('latin1'), /realdir\/linked-back\.img\0/);
});

test('create refuses what UML could not use: no backing file, a size other than the backing file\'s, a qcow2 base', () => {
  const back = s.path('cr-back.img');
  writeFileSync(back, Buffer.alloc(65536));
  const cases: Array<[string[], RegExp]> = [
    [['create', '-f', 'cow', s.path('nb.cow'), '1M'], /needs a backing file/],
    [['create', '-f', 'cow', '-b', back, s.path('sz.cow'), '1M'], /as large as its backing file/],
  ];
  must('qemu-img', ['create', '-q', '-f', 'qcow2', s.path('q.qcow2'), '1M']);
  cases.push([['create', '-f', 'cow', '-b', s.path('q.qcow2'), s.path('q.cow')], /raw/]);
  for (const [args, re] of cases) {
    const r = dw(args);
    assert.equal(r.status, 1, args.join(' '));
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, re);
  }
});

test('versions 1 and 2 and the broken 64-bit v3 layout, bits and data set by hand: uml_moo (which reads all three) merges what we read', () => {
  const size = 1 << 20;
  const back = s.path('old-back.img');
  makeBacking(back, size, 8);
  const mtime = Math.floor(statSync(back).mtimeMs / 1000);
  const layouts: CowLayout[] = ['v1', 'v2-time32', 'v3-broken'];
  for (const layout of layouts) {
    const alignment = layout === 'v3-broken' ? 4096 : 512;
    const hdr = serializeHeader({ layout, littleEndian: true, backingFile: back, mtime, size, sectorSize: 512, alignment, cowFormat: 0 });
    const { bitmapOffset, bitmapLength, dataOffset } = cowSizes(layout, size, 512, alignment);
    const file = Buffer.alloc(dataOffset + size);
    file.set(hdr, 0);
    const rnd = seededRandom(9);
    for (let i = 0; i < bitmapLength * 8; i++) {
      if (rnd() < 0.1) {
        file[bitmapOffset + (i >> 3)] |= 1 << (i & 7);
        file.fill(0x40 + (i % 50), dataOffset + i * 512, dataOffset + (i + 1) * 512);
      }
    }
    const cow = s.path(`old-${layout}.cow`);
    writeFileSync(cow, file);
    const moo = mooRaw(cow);
    assert.ok(oursRaw(cow).equals(moo), `${layout}: our read equals uml_moo's merge`);
    assert.ok(!moo.equals(readFileSync(back)), `${layout}: the COW file's sectors show`);
  }
});
