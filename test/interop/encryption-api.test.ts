// The app's side of encryption, through the contract as the faces call it (callApi: arguments validated, then
// the api): unlockImage checks a passphrase by opening the image and holds it in the main process; the map and
// info work without it; a data job without it, or after forgetImageKey, refuses in one plain line; setTargetKey
// lets create and convert make encrypted images without a passphrase in any job spec. Judged by qemu-img and
// qemu-io with --object secret: the data read through the app equals what qemu wrote, and what the app wrote
// qemu-img decrypts identically and checks clean; the encrypted file does not hold the plain data.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { after, test } from 'node:test';
import type { DiskErrorDto, DiskwrightApi, JobResults, JobSpec } from '../../src-shared/api';
import { callApi, createApi } from '../../src-main/api';
import { JobManager } from '../../src-main/services/jobs';
import { forgetAllKeys, keyFor } from '../../src-main/keyring';
import { must, qemuImgLuks, run, scratch } from '../helpers';
import { jobEnd } from '../job-end';

const s = scratch('dw-enc-api-');
after(() => {
  forgetAllKeys();
  s.cleanup();
});
const PASS = 'correct horse battery staple';
const passFile = s.path('pass');
writeFileSync(passFile, PASS);
const SECRET = `secret,id=s0,file=${passFile}`;
const recentFile = s.path('recent.json');
const jobs = new JobManager('anywhere');
const api = createApi(jobs, { backingPolicy: 'anywhere', recentFile });

/** A contract call as a face makes it: by name, arguments checked first. */
function call<M extends keyof DiskwrightApi>(method: M, ...args: unknown[]): Promise<unknown> {
  return callApi(api, method, args);
}

async function failure(p: Promise<unknown>): Promise<DiskErrorDto> {
  try {
    await p;
  } catch (err) {
    const e = err as { code: string; message: string };
    return { code: e.code as DiskErrorDto['code'], message: e.message };
  }
  assert.fail('expected the call to fail');
}

/** Runs a job to its end: its result, or the error it failed with. */
function runJob<K extends JobSpec['kind']>(spec: JobSpec & { kind: K }): Promise<{ result?: JobResults[K]; error?: DiskErrorDto }> {
  return jobEnd((l) => api.onJobEvent(l), () => api.startJob(spec)).then((e) => (e.type === 'done' ? { result: e.result as JobResults[K] } : { error: e.error }));
}

function luksImage(name: string): string {
  const path = s.path(name);
  qemuImgLuks(['create', '-q', '-f', 'qcow2', '--object', SECRET, '-o', 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10', path, '8M']);
  const w = run('qemu-io', ['--object', SECRET, '--image-opts', `driver=qcow2,file.filename=${path},encrypt.key-secret=s0`, '-c', 'write -P 0x5a 0 1M', '-c', 'write -P 0xc3 5M 64k']);
  assert.equal(w.status, 0, w.stderr);
  return path;
}

/** qemu-img compare of an encrypted qcow2 (opened with the secret) against a plain image. */
function qemuCompare(encrypted: string, plain: string, plainFormat: string): ReturnType<typeof run> {
  return run('qemu-img', ['compare', '--object', SECRET, '--image-opts', `driver=qcow2,file.filename=${encrypted},encrypt.key-secret=s0`, `driver=${plainFormat},file.filename=${plain}`]);
}

test('a LUKS image made by qemu: info and map without the key, a wrong passphrase refused in one line, the right one unlocks its data until forgotten', async () => {
  const img = luksImage('qemu-luks.qcow2');
  const info = (await call('inspect', img)) as { encrypted?: boolean; 'format-specific'?: { data: { encrypt?: Record<string, unknown> } } };
  assert.equal(info.encrypted, true);
  const q = JSON.parse(must('qemu-img', ['info', '--output=json', img]).stdout);
  assert.deepEqual(info['format-specific']?.data.encrypt, q['format-specific'].data.encrypt, 'the LUKS details are qemu-img info\'s');

  // The map needs no key (only the tables are read): qemu-img map agrees on where the data is.
  const pic = (await call('mapPicture', img, 8)) as { buckets: Array<{ data: number }> };
  assert.deepEqual(pic.buckets.map((b) => b.data > 0), [true, false, false, false, false, true, false, false]);

  // Check & Repair reads only metadata: no key needed (qemu-img check insists on one; the app need not).
  const checked = await runJob({ kind: 'check', path: img });
  assert.equal(checked.error, undefined, checked.error?.message);
  assert.equal(checked.result?.corruptions, 0);
  const repaired = await runJob({ kind: 'repair', path: img, mode: 'leaks', keepCopy: false });
  assert.equal(repaired.error, undefined, repaired.error?.message);

  const out = s.path('plain-none.raw');
  const before = readFileSync(img);
  const locked = await runJob({ kind: 'convert', source: img, target: out, targetFormat: 'raw', options: {} });
  assert.equal(locked.error?.code, 'EACCES');
  assert.match(locked.error!.message, /a passphrase is needed/);
  assert.equal(existsSync(out), false, 'a refused convert leaves no target');

  const wrong = await failure(call('unlockImage', img, 'not the passphrase'));
  assert.equal(wrong.code, 'EACCES');
  assert.match(wrong.message, /the passphrase does not open any key slot$/);
  assert.doesNotMatch(wrong.message, /not the passphrase/);
  assert.equal(keyFor(img), undefined, 'a wrong passphrase is not held');

  await call('unlockImage', img, PASS);
  const target = s.path('plain.raw');
  const done = await runJob({ kind: 'convert', source: img, target, targetFormat: 'raw', options: {} });
  assert.equal(done.error, undefined, done.error?.message);
  const cmp = qemuCompare(img, target, 'raw');
  assert.equal(cmp.status, 0, cmp.stdout + cmp.stderr);
  // The verify the Convert wizard runs.
  const verdict = await runJob({ kind: 'compare', a: img, b: target, formatB: 'raw' });
  assert.equal(verdict.result?.identical, true);

  // A wrong passphrase after a right one leaves the right one held.
  await failure(call('unlockImage', img, 'still wrong'));
  assert.equal((await runJob({ kind: 'checksum', path: img })).error, undefined);

  await call('forgetImageKey', img);
  assert.equal(keyFor(img), undefined);
  const after = await runJob({ kind: 'convert', source: img, target: s.path('plain-after.raw'), targetFormat: 'raw', options: {} });
  assert.match(after.error?.message ?? '', /a passphrase is needed/);
  assert.ok(readFileSync(img).equals(before), 'unlocking and reading never changed the image');

  // The passphrase is in no file the app wrote (the recent list) and no error.
  assert.ok(existsSync(recentFile));
  for (const f of readdirSync(s.dir)) {
    if (f === 'pass') continue;
    const text = readFileSync(s.path(f)).toString('latin1');
    assert.equal(text.includes(PASS), false, `${f} holds the passphrase`);
  }
});

test('an encrypted backing file is unlocked under its own name; the overlay reads through it', async () => {
  const base = luksImage('base-luks.qcow2');
  const top = s.path('top.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base-luks.qcow2', '-F', 'qcow2', top]);
  const locked = await runJob({ kind: 'checksum', path: top });
  assert.match(locked.error?.message ?? '', /base-luks\.qcow2: the image is encrypted: a passphrase is needed/);
  await call('unlockImage', base, PASS);
  const out = s.path('through-top.raw');
  assert.equal((await runJob({ kind: 'convert', source: top, target: out, targetFormat: 'raw', options: {} })).error, undefined);
  assert.equal(qemuCompare(base, out, 'raw').status, 0);
  await call('forgetImageKey', base);
});

test('New Image and Convert make encrypted images with the key from setTargetKey: qemu-img decrypts them identically and checks them clean', async () => {
  // create
  const made = s.path('new-luks.qcow2');
  await call('setTargetKey', made, PASS);
  const created = await runJob({ kind: 'create', path: made, format: 'qcow2', size: 4 << 20, options: { 'encrypt.format': 'luks', 'encrypt.iter-time': 10 } });
  assert.equal(created.error, undefined, created.error?.message);
  await call('forgetImageKey', made);
  const q = JSON.parse(must('qemu-img', ['info', '--output=json', made]).stdout);
  assert.equal(q.encrypted, true);
  assert.equal(q['format-specific'].data.encrypt.format, 'luks');
  assert.equal(q['format-specific'].data.encrypt['cipher-alg'], 'aes-256');
  assert.equal(q['format-specific'].data.encrypt['cipher-mode'], 'xts');
  const chk = run('qemu-img', ['check', '--object', SECRET, '--image-opts', `driver=qcow2,file.filename=${made},encrypt.key-secret=s0`]);
  assert.equal(chk.status, 0, chk.stdout + chk.stderr);
  const io = run('qemu-io', ['-f', 'qcow2', '-c', 'read 0 512', made]); // qemu's open without the key refuses
  assert.match(io.stderr, /encrypt\.key-secret' is required/);

  // convert a plain image with a marker into an encrypted one
  const marker = Buffer.from('DISKWRIGHT-PLAIN-MARKER-0123456789');
  const plain = Buffer.alloc(4 << 20);
  for (let off = 0; off + marker.length <= 1 << 20; off += 4096) marker.copy(plain, off);
  randomBytes(65536).copy(plain, 2 << 20);
  const src = s.path('marker.raw');
  writeFileSync(src, plain);
  for (const format of ['luks', 'aes']) {
    const target = s.path(`enc-${format}.qcow2`);
    await call('setTargetKey', target, PASS);
    const r = await runJob({ kind: 'convert', source: src, target, targetFormat: 'qcow2', options: { 'encrypt.format': format, ...(format === 'luks' ? { 'encrypt.iter-time': 10 } : {}) } });
    assert.equal(r.error, undefined, r.error?.message);
    // The verify the wizard runs reads the target through the same held key.
    assert.equal((await runJob({ kind: 'compare', a: src, b: target, formatB: 'qcow2' })).result?.identical, true);
    await call('forgetImageKey', target);
    assert.equal(readdirSync(s.dir).filter((n) => n.includes(`enc-${format}`) && n.endsWith('.tmp')).length, 0, 'no temporary file is left');
    const cmp = qemuCompare(target, src, 'raw');
    assert.equal(cmp.status, 0, `${format}: ${cmp.stdout}${cmp.stderr}`);
    const c = run('qemu-img', ['check', '--object', SECRET, '--image-opts', `driver=qcow2,file.filename=${target},encrypt.key-secret=s0`]);
    assert.equal(c.status, 0, c.stdout + c.stderr);
    assert.equal(readFileSync(target).includes(marker), false, `${format}: the encrypted file holds the plain data`);
  }
});

test('the passphrase arguments are checked, and an image that is not encrypted takes none', async () => {
  const plain = s.path('plain.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', plain, '1M']);
  const notEnc = await failure(call('unlockImage', plain, PASS));
  assert.equal(notEnc.code, 'EINVAL');
  assert.match(notEnc.message, /not encrypted/);
  assert.equal(keyFor(plain), undefined);
  for (const [bad, words] of [['', /empty/], ['a\0b', /NUL/], [42, /must be text/], ['x'.repeat(5000), /too long/]] as const) {
    const e = await failure(call('unlockImage', plain, bad));
    assert.equal(e.code, 'EINVAL');
    assert.match(e.message, words);
    assert.equal(e.message.length < 200, true, 'the message does not quote the value');
  }
  const missing = await failure(call('unlockImage', s.path('nothing-here.qcow2'), PASS));
  assert.equal(missing.code, 'ENOENT');
  // forgetting what is not held is no error
  await call('forgetImageKey', s.path('nothing-here.qcow2'));
});
