// Encrypted qcow2 (crypt_method 1 AES, 2 LUKS) against qemu-img and qemu-io with --object secret: images
// qemu encrypted read identically here; images encrypted here are decrypted identically by qemu-img, pass
// qemu-img check with the key, and take qemu-io's writes, which we read back. Through the driver's API (the
// CLI's --object parsing is not part of this suite).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { after, test } from 'node:test';
import { dw, must, qemuImgLuks, run, scratch } from '../helpers';
import { openQcow2 } from '../../src-main/formats/qcow2/device';
import { createQcow2 } from '../../src-main/formats/qcow2/create';
import { checkQcow2 } from '../../src-main/formats/qcow2/check/check';
import { qcow2Driver } from '../../src-main/formats/qcow2/driver';
import { ImageFile } from '../../src-main/block/file';
import { DiskError } from '../../src-main/block/errors';
import type { OpenOptions } from '../../src-main/block/types';
import { NO_SLOT_OPENS } from '../../src-main/crypto';

const s = scratch('dw-crypto-qcow2-');
after(s.cleanup);
const PASS = 'tr0ub4dor&3';
const passFile = s.path('pass');
writeFileSync(passFile, PASS);
const SECRET = `secret,id=s0,file=${passFile}`;
const SIZE = 5 * 1024 * 1024;

const noBacking = async () => {
  throw new Error('no backing');
};
const openOpts = (readOnly: boolean, passphrase?: string, withoutKey = false): OpenOptions => ({
  readOnly,
  backingPolicy: 'none',
  openBacking: noBacking,
  ...(passphrase !== undefined ? { passphrase: Buffer.from(passphrase) } : {}),
  ...(withoutKey ? { withoutKey } : {}),
});

/** Random data with a hole and a zero run, as a raw file. */
function randomRaw(name: string): { path: string; data: Buffer } {
  const data = randomBytes(SIZE);
  data.fill(0, 1 << 20, 2 << 20);
  const path = s.path(name);
  writeFileSync(path, data);
  return { path, data };
}

async function readAllHere(path: string, passphrase = PASS): Promise<Buffer> {
  const dev = await openQcow2(path, openOpts(true, passphrase));
  try {
    const out = Buffer.alloc(dev.size);
    await dev.read(0, out);
    return out;
  } finally {
    await dev.close();
  }
}

function imageOpts(path: string): string {
  return `driver=qcow2,file.filename=${path},encrypt.key-secret=s0`;
}

/** qemu-img's decryption of an encrypted qcow2, as raw bytes. */
function readAllByQemu(path: string): Buffer {
  const out = s.path('qemu-view.raw');
  must('qemu-img', ['convert', '--object', SECRET, '--image-opts', imageOpts(path), '-O', 'raw', out]);
  return readFileSync(out);
}

function assertQemuCheckClean(path: string): void {
  const r = run('qemu-img', ['check', '--object', SECRET, '--image-opts', imageOpts(path)]);
  assert.equal(r.status, 0, `qemu-img check: ${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /No errors were found/);
}

async function infoHere(path: string): Promise<any> {
  const file = await ImageFile.open(path, false);
  try {
    return await qcow2Driver.describe(file);
  } finally {
    await file.close();
  }
}

for (const format of ['luks', 'aes'] as const) {
  test(`a ${format} qcow2 qemu-img wrote reads here identically, and info's encrypt and encrypted equal qemu's`, async () => {
    const raw = randomRaw('in.raw');
    const img = s.path(`qemu-${format}.qcow2`);
    const extra = format === 'luks' ? ',encrypt.iter-time=100' : '';
    qemuImgLuks(['convert', '--object', SECRET, '-O', 'qcow2', '-o', `encrypt.format=${format},encrypt.key-secret=s0${extra}`, raw.path, img]);
    must('qemu-io', ['--object', SECRET, '--image-opts', imageOpts(img), '-c', 'write -P 0x3c 1000448 8192', '-c', 'write -z 3145728 65536']);
    const want = Buffer.from(raw.data);
    want.fill(0x3c, 1000448, 1000448 + 8192);
    want.fill(0, 3145728, 3145728 + 65536);
    assert.ok((await readAllHere(img)).equals(want), 'our reading equals what qemu wrote');
    assert.ok(readAllByQemu(img).equals(want), "qemu's own reading (sanity)");
    assert.ok(!readFileSync(img).includes(raw.data.subarray(8192, 12288)), 'the file does not hold the plain data');
    const q = JSON.parse(must('qemu-img', ['info', '--output', 'json', img]).stdout);
    const ours = await infoHere(img);
    assert.equal(ours.encrypted, true);
    assert.deepEqual(ours['format-specific'].data.encrypt, q['format-specific'].data.encrypt);
    assert.deepEqual(Object.keys(ours['format-specific'].data), Object.keys(q['format-specific'].data), 'key order as qemu');
    // Unaligned reads decrypt whole sectors underneath.
    const dev = await openQcow2(img, openOpts(true, PASS));
    const part = Buffer.alloc(1000);
    await dev.read(1000447, part);
    await dev.close();
    assert.ok(part.equals(want.subarray(1000447, 1001447)));
  });
}

test('a LUKS qcow2 qemu-img made: a wrong passphrase is refused by name, no passphrase opens read-only for map and check only', async () => {
  const img = s.path('qemu-luks.qcow2');
  await assert.rejects(openQcow2(img, openOpts(true, 'wrong')), (e: unknown) => e instanceof DiskError && e.message.endsWith(NO_SLOT_OPENS) && !e.message.includes('wrong'));
  await assert.rejects(openQcow2(img, openOpts(false)), /a passphrase is needed/);
  // Without the key but asked to: metadata work goes on, data writes refuse.
  const meta = await openQcow2(img, openOpts(false, undefined, true));
  await assert.rejects(meta.write(0, Buffer.alloc(65536, 1)), /a passphrase is needed/);
  await meta.close();
  await assert.rejects(openQcow2(img, openOpts(true)), /a passphrase is needed/);
  const dev = await openQcow2(img, openOpts(true, undefined, true));
  const ext = await dev.status(0, dev.size);
  assert.equal(ext.kind, 'data');
  await assert.rejects(dev.read(0, Buffer.alloc(512)), /a passphrase is needed/);
  await dev.close();
  const report = await checkQcow2(img, 'none');
  assert.equal(report.corruptions + report.leaks + report['check-errors'], 0);
});

for (const format of ['luks', 'aes'] as const) {
  test(`a ${format} qcow2 made and written here is decrypted identically by qemu-img, passes its check, and takes qemu-io's writes`, async () => {
    const img = s.path(`ours-${format}.qcow2`);
    const options = { 'encrypt.format': format, 'encrypt.key-secret': 's0', ...(format === 'luks' ? { 'encrypt.iter-time': 10 } : {}) };
    await createQcow2(img, SIZE, { options, passphrase: Buffer.from(PASS) });
    const raw = randomRaw('ours.raw');
    const want = Buffer.from(raw.data);
    const dev = await openQcow2(img, openOpts(false, PASS));
    // Whole clusters, a partial cluster, unaligned edges (read-modify-write of sectors), zeroes both ways.
    await dev.write(0, raw.data.subarray(0, 1 << 20));
    await dev.write(3 << 20, raw.data.subarray(3 << 20, (3 << 20) + 300_000));
    await dev.write(4_000_001, raw.data.subarray(4_000_001, 4_100_003));
    await dev.writeZeroes(100_001, 5000);
    await dev.writeZeroes(131072, 65536);
    await dev.writeZeroes(4_050_010, 100); // inside one sector
    await dev.write(4_060_001, Buffer.alloc(7, 0xee)); // inside one sector
    await assert.rejects(dev.writeCompressed(4 << 20, Buffer.alloc(65536, 1)), /compressed clusters cannot be written into an encrypted image/);
    await dev.close();
    want.fill(0, 1 << 20, 3 << 20);
    want.fill(0, (3 << 20) + 300_000, 4_000_001);
    want.fill(0, 4_100_003);
    want.fill(0, 100_001, 105_001);
    want.fill(0, 131072, 196608);
    want.fill(0, 4_050_010, 4_050_110);
    want.fill(0xee, 4_060_001, 4_060_008);
    assert.ok((await readAllHere(img)).equals(want), 'we read back what we wrote');
    assert.ok(readAllByQemu(img).equals(want), 'qemu-img decrypts what we wrote');
    assertQemuCheckClean(img);
    assert.ok(!readFileSync(img).includes(raw.data.subarray(4096, 8192)), 'the file does not hold the plain data');
    const q = JSON.parse(must('qemu-img', ['info', '--output', 'json', img]).stdout);
    assert.equal(q.encrypted, true);
    assert.equal(q['format-specific'].data.encrypt.format, format);
    if (format === 'luks') {
      for (const [k, v] of Object.entries({ 'cipher-alg': 'aes-256', 'cipher-mode': 'xts', 'ivgen-alg': 'plain64', 'hash-alg': 'sha256' })) {
        assert.equal(q['format-specific'].data.encrypt[k], v, k);
      }
    }
    must('qemu-io', ['--object', SECRET, '--image-opts', imageOpts(img), '-c', 'write -P 0x77 2097152 131072', '-c', 'write -P 0x78 512 1024']);
    want.fill(0x77, 2097152, 2097152 + 131072);
    want.fill(0x78, 512, 1536);
    assert.ok((await readAllHere(img)).equals(want), "we read qemu-io's writes");
    assertQemuCheckClean(img);
    // Our own check agrees, with no key.
    const report = await checkQcow2(img, 'none');
    assert.equal(report.corruptions + report.leaks + report['check-errors'], 0);
  });
}

test('create refuses encryption without a passphrase and unknown encrypt options, leaving no file', async () => {
  const img = s.path('refused.qcow2');
  await assert.rejects(createQcow2(img, SIZE, { options: { 'encrypt.format': 'luks' } }), /encrypt.key-secret is required/);
  await assert.rejects(createQcow2(img, SIZE, { options: { 'encrypt.format': 'rot13' }, passphrase: Buffer.from('x') }), /encrypt.format must be luks or aes/);
  await assert.rejects(createQcow2(img, SIZE, { options: { 'encrypt.cipher-alg': 'aes-128' } }), /need encrypt.format/);
  assert.ok(!existsSync(img));
});

test('a LUKS qcow2 made here with other ciphers (aes-128 cbc essiv, compat=0.10) is read by qemu-img', async () => {
  const img = s.path('ours-cbc.qcow2');
  const options = { compat: '0.10', 'encrypt.format': 'luks', 'encrypt.cipher-alg': 'aes-128', 'encrypt.cipher-mode': 'cbc', 'encrypt.ivgen-alg': 'essiv', 'encrypt.iter-time': 10 };
  await createQcow2(img, SIZE, { options, passphrase: Buffer.from(PASS) });
  const data = randomBytes(SIZE);
  const dev = await openQcow2(img, openOpts(false, PASS));
  await dev.write(0, data);
  await dev.close();
  assert.ok(readAllByQemu(img).equals(data));
  assertQemuCheckClean(img);
  const q = JSON.parse(must('qemu-img', ['info', '--output', 'json', img]).stdout);
  assert.deepEqual((await infoHere(img))['format-specific'].data.encrypt, q['format-specific'].data.encrypt);
});

test('the LUKS header lies where qemu-img puts it (after the L1 table), and damage to it or its extension is refused in plain words', async () => {
  const img = s.path('layout.qcow2');
  await createQcow2(img, SIZE, { options: { 'encrypt.format': 'luks', 'encrypt.iter-time': 10 }, passphrase: Buffer.from(PASS) });
  const good = readFileSync(img);
  // qemu-img create: refcount table 0x10000, refcount block 0x20000, L1 0x30000, LUKS header 0x40000 (0x1f9000 bytes).
  assert.equal(good.readBigUInt64BE(40), 0x30000n);
  const extAt = 112 + 8; // the first extension, as qemu orders them (before the feature name table)
  assert.equal(good.readUInt32BE(112), 0x0537be77);
  assert.equal(good.readBigUInt64BE(extAt), 0x40000n);
  assert.equal(good.readBigUInt64BE(extAt + 8), 0x1f9000n);
  const cases: Array<[string, (b: Buffer) => void, RegExp]> = [
    ['offset past the end', (b) => b.writeBigUInt64BE(0x7000000n, extAt), /LUKS header .* does not fit in the file/],
    ['unaligned offset', (b) => b.writeBigUInt64BE(0x40200n, extAt), /not a multiple of the cluster size/],
    ['length too small', (b) => b.writeBigUInt64BE(100n, extAt + 8), /does not fit in the file/],
    ['huge offset', (b) => b.writeBigUInt64BE(0xffffffffffffff00n, extAt), /impossibly large/],
    ['LUKS magic gone', (b) => b.fill(0, 0x40000, 0x40006), /no LUKS header here/],
    ['unknown LUKS cipher', (b) => b.write('blowfish\0', 0x40000 + 8, 'latin1'), /LUKS cipher blowfish .* not supported/],
    ['key slot 0 past the region', (b) => b.writeUInt32BE(0x7fffff, 0x40000 + 208 + 40), /key slot 0 lies outside/],
    ['extension missing', (b) => b.writeUInt32BE(0x12345678, 112), /no FULL_DISK_ENCRYPTION extension/],
  ];
  for (const [label, edit, pattern] of cases) {
    const b = Buffer.from(good);
    edit(b);
    const p = s.path('damaged.qcow2');
    writeFileSync(p, b);
    await assert.rejects(openQcow2(p, openOpts(true, PASS)), (e: unknown) => e instanceof DiskError && pattern.test(e.message), label);
  }
});

test('snapshots of an encrypted image taken, listed and applied here without the key; qemu-img reads the result with it', async () => {
  const img = s.path('oursnap.qcow2');
  await createQcow2(img, SIZE, { options: { 'encrypt.format': 'luks', 'encrypt.iter-time': 10 }, passphrase: Buffer.from(PASS) });
  const first = randomBytes(SIZE);
  let dev = await openQcow2(img, openOpts(false, PASS));
  await dev.write(0, first);
  await dev.close();
  await qcow2Driver.snapshots!.create(img, 'before');
  dev = await openQcow2(img, openOpts(false, PASS));
  await dev.write(0, Buffer.alloc(2 << 20, 0x42));
  await dev.close();
  assert.deepEqual((await qcow2Driver.snapshots!.list(img)).map((x) => x.name), ['before']);
  assertQemuCheckClean(img);
  await qcow2Driver.snapshots!.apply(img, 'before');
  assert.ok(readAllByQemu(img).equals(first), 'qemu-img reads the applied snapshot');
  assertQemuCheckClean(img);
  const q = JSON.parse(must('qemu-img', ['info', '--output', 'json', img]).stdout);
  assert.equal(q['format-specific'].data.encrypt.format, 'luks');
});

test("snapshots of an encrypted image: qemu-img's internal snapshot of our LUKS image reads here as qemu reads it", async () => {
  const img = s.path('snap.qcow2');
  await createQcow2(img, SIZE, { options: { 'encrypt.format': 'luks', 'encrypt.iter-time': 10 }, passphrase: Buffer.from(PASS) });
  const before = randomBytes(SIZE);
  let dev = await openQcow2(img, openOpts(false, PASS));
  await dev.write(0, before);
  await dev.close();
  must('qemu-img', ['snapshot', '--object', SECRET, '--image-opts', imageOpts(img), '-c', 'one']);
  must('qemu-io', ['--object', SECRET, '--image-opts', imageOpts(img), '-c', 'write -P 0x11 0 1048576']);
  dev = await openQcow2(img, { ...openOpts(true, PASS), snapshot: 'one' });
  const snap = Buffer.alloc(SIZE);
  await dev.read(0, snap);
  await dev.close();
  assert.ok(snap.equals(before), 'the snapshot reads as it was');
  const now = await readAllHere(img);
  assert.ok(now.subarray(0, 1048576).every((x) => x === 0x11));
  assert.ok(now.subarray(1048576).equals(before.subarray(1048576)));
  assertQemuCheckClean(img);
});

test('measure counts the LUKS header as qemu-img measure does', async () => {
  const { measureQcow2 } = await import('../../src-main/formats/qcow2/measure');
  for (const extra of ['encrypt.format=luks', 'encrypt.format=luks,encrypt.cipher-alg=aes-128', 'encrypt.format=luks,encrypt.cipher-mode=cbc,cluster_size=4096', 'encrypt.format=aes']) {
    const q = JSON.parse(qemuImgLuks(['measure', '--output', 'json', '--object', SECRET, '-O', 'qcow2', '-o', `${extra},encrypt.key-secret=s0`, '--size', '1G']).stdout);
    const options = Object.fromEntries(`${extra},encrypt.key-secret=s0`.split(',').map((kv) => kv.split('=') as [string, string]));
    const ours = await measureQcow2(1 << 30, { options }, undefined);
    assert.deepEqual({ required: ours.required, fully: ours.fullyAllocated }, { required: q.required, fully: q['fully-allocated'] }, extra);
  }
});

test("the CLI's info says 'encrypted: yes' where qemu-img info does (human and JSON); a plain image says nothing of it", async () => {
  const luks = s.path('info-luks.qcow2');
  const aes = s.path('info-aes.qcow2');
  const plain = s.path('info-plain.qcow2');
  await createQcow2(luks, SIZE, { options: { 'encrypt.format': 'luks', 'encrypt.iter-time': 10 }, passphrase: Buffer.from(PASS) });
  await createQcow2(aes, SIZE, { options: { 'encrypt.format': 'aes' }, passphrase: Buffer.from(PASS) });
  must('qemu-img', ['create', '-q', '-f', 'qcow2', plain, String(SIZE)]);
  // The lines both print in the same place (disk size is left out: it is the file system's figure, not the image's).
  const head = (text: string) => text.split('\n').filter((l) => /^(image|file format|virtual size|encrypted|cluster_size):/.test(l));
  for (const img of [luks, aes, plain]) {
    const ours = dw(['info', img]);
    assert.equal(ours.status, 0, ours.stderr);
    const theirs = must('qemu-img', ['info', img]).stdout;
    assert.deepEqual(head(ours.stdout), head(theirs), img);
    assert.equal(/^encrypted: yes$/m.test(ours.stdout), img !== plain, img);
    const jsonOurs = JSON.parse(dw(['info', '--output', 'json', img]).stdout);
    const jsonTheirs = JSON.parse(must('qemu-img', ['info', '--output', 'json', img]).stdout);
    assert.equal(jsonOurs.encrypted, jsonTheirs.encrypted, img);
  }
});
