// LUKS1 against the oracles: volumes qemu-img makes are unlocked here and their payload decrypts to what qemu
// put in; volumes made here are opened by qemu-img (and read by cryptsetup) and decrypt to what we put in.
// A standalone LUKS file is the header region then the payload, sectors numbered from the payload's start.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { openSync, readSync, closeSync, readFileSync, writeFileSync, statSync, existsSync } from 'node:fs';
import { after, test } from 'node:test';
import { must, qemuImgLuks, run, scratch } from '../helpers';
import { createLuks, luksInfo, unlockLuks, NO_SLOT_OPENS, type LuksCreateOptions } from '../../src-main/crypto/luks';
import { LUKS_HEADER_BYTES, parseLuksHeader } from '../../src-main/crypto/luks-header';
import { DiskError } from '../../src-main/block/errors';

const s = scratch('dw-crypto-luks-');
after(s.cleanup);
const PASS = 'correct horse battery staple';
const passFile = s.path('pass');
writeFileSync(passFile, PASS);
const secret = `secret,id=s0,file=${passFile}`;
const SIZE = 3 * 1024 * 1024;

/** A raw image of random data with holes, qemu-io-free (the bytes are ours, qemu only encrypts them). */
function randomRaw(name: string): { path: string; data: Buffer } {
  const data = randomBytes(SIZE);
  data.fill(0, 512 * 1024, 1024 * 1024);
  const path = s.path(name);
  writeFileSync(path, data);
  return { path, data };
}

function readAt(path: string) {
  return async (offset: number, length: number): Promise<Uint8Array> => {
    const fd = openSync(path, 'r');
    try {
      const b = Buffer.alloc(length);
      const n = readSync(fd, b, 0, length, offset);
      if (n !== length) throw new Error(`short read at ${offset}`);
      return b;
    } finally {
      closeSync(fd);
    }
  };
}

/** Unlocks a standalone LUKS file here and decrypts its whole payload. */
async function decryptHere(path: string, pass: string): Promise<Buffer> {
  const file = readFileSync(path);
  const header = parseLuksHeader(file.subarray(0, LUKS_HEADER_BYTES), path);
  const { cipher } = await unlockLuks(header, readAt(path), file.length, Buffer.from(pass), path);
  const payload = Buffer.from(file.subarray(header.payloadOffset * 512));
  cipher.decrypt(payload, 0);
  cipher.close();
  return payload;
}

/** Makes a standalone LUKS file here: our header region, then `data` encrypted. */
async function encryptHere(path: string, data: Buffer, o: Omit<LuksCreateOptions, 'passphrase'>): Promise<void> {
  const made = await createLuks({ passphrase: Buffer.from(PASS), iterTime: 10, ...o });
  const payload = Buffer.from(data);
  made.cipher.encrypt(payload, 0);
  made.cipher.close();
  writeFileSync(path, Buffer.concat([made.region, payload]));
}

/** qemu-img decrypts a standalone LUKS file into raw bytes. */
function decryptByQemu(path: string, pass = PASS): Buffer {
  const pf = s.path('qpass');
  writeFileSync(pf, pass);
  const out = s.path('qemu-out.raw');
  must('qemu-img', ['convert', '--object', `secret,id=q0,file=${pf}`, '--image-opts', `driver=luks,key-secret=q0,file.filename=${path}`, '-O', 'raw', out]);
  return readFileSync(out);
}

/** qemu-img making a LUKS volume (its PBKDF2 benchmark's flake retried: helpers.ts). */
function qemuMakesLuks(args: string[]): void {
  qemuImgLuks(args);
}

const qemuVariants: Array<{ label: string; opts: string }> = [
  { label: 'qemu-img defaults (aes-256 xts plain64 sha256)', opts: '' },
  { label: 'aes-128 cbc essiv:sha256, sha1', opts: ',cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=essiv,hash-alg=sha1' },
  { label: 'aes-192 xts plain, sha512', opts: ',cipher-alg=aes-192,cipher-mode=xts,ivgen-alg=plain,hash-alg=sha512' },
];

for (const v of qemuVariants) {
  test(`a LUKS volume qemu-img made (${v.label}) unlocks here and decrypts to what qemu encrypted`, async () => {
    const raw = randomRaw('in.raw');
    const luks = s.path('qemu.luks');
    qemuMakesLuks(['convert', '--object', secret, '-O', 'luks', '-o', `key-secret=s0,iter-time=100${v.opts}`, raw.path, luks]);
    const payload = await decryptHere(luks, PASS);
    assert.equal(payload.length, SIZE);
    assert.ok(payload.equals(raw.data), 'payload decrypted here equals the raw input');
    assert.ok(!readFileSync(luks).includes(raw.data.subarray(0, 4096)), 'the volume does not hold the plain data');
    // info: our description of the header equals qemu-img info's format-specific data.
    const qinfo = JSON.parse(must('qemu-img', ['info', '--output', 'json', luks]).stdout);
    const header = parseLuksHeader(readFileSync(luks).subarray(0, LUKS_HEADER_BYTES), luks);
    assert.deepEqual(luksInfo(header, luks), qinfo['format-specific'].data);
    // The wrong passphrase is refused by name, with no secret in the message.
    await assert.rejects(decryptHere(luks, 'not it'), (e: unknown) => e instanceof DiskError && e.message.includes(NO_SLOT_OPENS) && !e.message.includes('not it'));
  });
}

const ourVariants: Array<{ label: string; o: Omit<LuksCreateOptions, 'passphrase'>; qemu: Record<string, string> }> = [
  { label: 'defaults', o: {}, qemu: { 'cipher-alg': 'aes-256', 'cipher-mode': 'xts', 'ivgen-alg': 'plain64', 'hash-alg': 'sha256' } },
  { label: 'aes-128 xts essiv:sha256', o: { cipherAlg: 'aes-128', ivgenAlg: 'essiv' }, qemu: { 'cipher-alg': 'aes-128', 'cipher-mode': 'xts', 'ivgen-alg': 'essiv', 'ivgen-hash-alg': 'sha256' } },
  { label: 'aes-256 cbc essiv:sha256 sha512', o: { cipherMode: 'cbc', ivgenAlg: 'essiv', hashAlg: 'sha512' }, qemu: { 'cipher-mode': 'cbc', 'hash-alg': 'sha512' } },
  { label: 'aes-128 cbc plain64 sha1', o: { cipherAlg: 'aes-128', cipherMode: 'cbc', hashAlg: 'sha1' }, qemu: { 'cipher-alg': 'aes-128', 'hash-alg': 'sha1' } },
  { label: 'aes-256 ecb', o: { cipherMode: 'ecb' }, qemu: { 'cipher-mode': 'ecb' } },
  { label: 'aes-256 ctr plain64', o: { cipherMode: 'ctr' }, qemu: { 'cipher-mode': 'ctr' } },
];

for (const v of ourVariants) {
  test(`a LUKS volume made here (${v.label}) is opened by qemu-img and decrypts to what we encrypted`, async () => {
    const raw = randomRaw('ours-in.raw');
    const luks = s.path('ours.luks');
    await encryptHere(luks, raw.data, v.o);
    assert.ok(!readFileSync(luks).includes(raw.data.subarray(0, 4096)), 'the volume does not hold the plain data');
    const out = decryptByQemu(luks);
    assert.ok(out.equals(raw.data), 'qemu-img decrypts our payload to the input');
    const qinfo = JSON.parse(must('qemu-img', ['info', '--output', 'json', luks]).stdout);
    for (const [k, want] of Object.entries(v.qemu)) assert.equal(qinfo['format-specific'].data[k], want, k);
    // We read back what we wrote, and qemu refuses a wrong passphrase on our header too.
    assert.ok((await decryptHere(luks, PASS)).equals(raw.data));
    const pf = s.path('bad');
    writeFileSync(pf, 'wrong');
    const bad = run('qemu-img', ['convert', '--object', `secret,id=q0,file=${pf}`, '--image-opts', `driver=luks,key-secret=q0,file.filename=${luks}`, '-O', 'raw', s.path('bad.raw')]);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /Invalid password/);
  });
}

test('aes-192 outside XTS, whose key material qemu 7.2 cannot open (it asserts), is refused before any work', async () => {
  await assert.rejects(createLuks({ passphrase: Buffer.from(PASS), iterTime: 10, cipherAlg: 'aes-192', cipherMode: 'cbc' }), /not possible in a LUKS header qemu can open/);
});

test('qemu-io writes into a LUKS volume made here, and we read its writes', async () => {
  const raw = randomRaw('io.raw');
  const luks = s.path('io.luks');
  await encryptHere(luks, raw.data, {});
  must('qemu-io', ['--object', secret, '--image-opts', `driver=luks,key-secret=s0,file.filename=${luks}`, '-c', 'write -P 0x5c 4096 70000', '-c', 'write -P 0xa1 2097152 512']);
  const got = await decryptHere(luks, PASS);
  const want = Buffer.from(raw.data);
  want.fill(0x5c, 4096, 4096 + 70000);
  want.fill(0xa1, 2097152, 2097152 + 512);
  assert.ok(got.equals(want));
});

test('cryptsetup reads a header made here: luksDump agrees, and the passphrase opens slot 0', async (t) => {
  if (!existsSync('/usr/sbin/cryptsetup') && run('sh', ['-c', 'command -v cryptsetup']).status !== 0) return t.skip('no cryptsetup');
  const luks = s.path('cs.luks');
  await encryptHere(luks, randomBytes(1024 * 1024), { cipherMode: 'cbc', ivgenAlg: 'essiv' });
  const dump = must('cryptsetup', ['luksDump', luks]).stdout;
  const header = parseLuksHeader(readFileSync(luks).subarray(0, LUKS_HEADER_BYTES), luks);
  assert.match(dump, /Version:\s+1/);
  assert.match(dump, /Cipher name:\s+aes/);
  assert.match(dump, /Cipher mode:\s+cbc-essiv:sha256/);
  assert.match(dump, /Hash spec:\s+sha256/);
  assert.match(dump, new RegExp(`Payload offset:\\s+${header.payloadOffset}\\b`));
  assert.match(dump, /MK bits:\s+256/);
  assert.match(dump, new RegExp(`UUID:\\s+${header.uuid}`));
  assert.match(dump, new RegExp(`Key Slot 0: ENABLED\\s+Iterations:\\s+${header.slots[0].iterations}\\b`));
  assert.match(dump, /Key Slot 7: DISABLED/);
  // --test-passphrase unlocks the key without mapping a device (needs no root on a file, where it works).
  const ok = run('cryptsetup', ['open', '--test-passphrase', '--key-file', passFile, luks]);
  if (ok.status === 0) {
    writeFileSync(s.path('pass-wrong'), 'not the passphrase');
    const bad = run('cryptsetup', ['open', '--test-passphrase', '--key-file', s.path('pass-wrong'), luks]);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /No key available/);
  } else {
    t.diagnostic(`cryptsetup open --test-passphrase could not run here: ${ok.stderr.trim()}`);
  }
  assert.ok(statSync(luks).size > header.payloadOffset * 512);
});
