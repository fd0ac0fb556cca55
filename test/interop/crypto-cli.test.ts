// Encrypted qcow2 through the command line, judged by qemu-img and qemu-io with the same --object secret and
// --image-opts forms: images qemu encrypted (LUKS and the old AES) read identically through our CLI; images our
// CLI encrypts are decrypted identically by qemu-img, pass its check and take qemu-io's writes; without the key
// info, map and check work and data commands refuse in one plain line; a wrong passphrase leaves no target and
// the image untouched; the passphrase is never in an error, a file we write, or a process's command line.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { CLI, assertPlainError, dw, dwOk, must, run, scratch } from '../helpers';

const s = scratch('dw-crypto-cli-');
after(s.cleanup);
const PASS = 'c0rrect-h0rse,battery';
const passFile = s.path('pass');
writeFileSync(passFile, PASS);
const wrongFile = s.path('wrong');
writeFileSync(wrongFile, 'not-the-passphrase');
const SECRET = `secret,id=s0,file=${passFile}`;
const OBJ = ['--object', SECRET];
const SIZE = 5 * 1024 * 1024;

const opts = (path: string, id = 's0') => `driver=qcow2,file.filename=${path},encrypt.key-secret=${id}`;

/** Random data with a zero MiB in it, as a raw file. */
function randomRaw(name: string, size = SIZE): { path: string; data: Buffer } {
  const data = randomBytes(size);
  data.fill(0, 1 << 20, 2 << 20);
  const path = s.path(name);
  writeFileSync(path, data);
  return { path, data };
}

/** qemu-img's decryption of an encrypted qcow2 (or a chain, given as image-opts), as raw bytes. */
function qemuPlain(imageOpts: string): Buffer {
  const out = s.path('qemu-view.raw');
  must('qemu-img', ['convert', ...OBJ, '--image-opts', imageOpts, '-O', 'raw', out]);
  return readFileSync(out);
}

/** Our CLI's decryption of the same, as raw bytes. */
function ourPlain(imageOpts: string): Buffer {
  const out = s.path('our-view.raw');
  dwOk(['convert', ...OBJ, '--image-opts', imageOpts, '-O', 'raw', out]);
  return readFileSync(out);
}

function qemuCheckClean(path: string): void {
  const r = run('qemu-img', ['check', ...OBJ, '--image-opts', opts(path)]);
  assert.equal(r.status, 0, `qemu-img check: ${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /No errors were found/);
}

function qemuCreate(path: string, format: 'luks' | 'aes', size = SIZE): void {
  const o = format === 'luks' ? 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10' : 'encrypt.format=aes,encrypt.key-secret=s0';
  // qemu's PBKDF2 benchmark sometimes gives up on a busy machine ("Unable to get accurate CPU usage"): retried.
  for (let attempt = 1; ; attempt++) {
    const r = run('qemu-img', ['create', '-q', '-f', 'qcow2', ...OBJ, '-o', o, path, String(size)]);
    if (r.status === 0) return;
    if (attempt >= 4 || !/Unable to get accurate CPU usage/.test(r.stderr)) throw new Error(`qemu-img create: ${r.stderr}`);
  }
}

/** The bytes and mtime of a file, to show an operation left it as it was. */
function snapshotOf(path: string): { bytes: Buffer; mtime: number } {
  return { bytes: readFileSync(path), mtime: statSync(path).mtimeMs };
}

function assertNoPlain(path: string, plain: Buffer): void {
  const file = readFileSync(path);
  for (const at of [0, 3 << 20, SIZE - 4096]) assert.equal(file.indexOf(plain.subarray(at, at + 64)), -1, `the plain data at ${at} is in ${path}`);
}

for (const format of ['luks', 'aes'] as const) {
  test(`${format}: an image qemu encrypted and qemu-io filled reads identically through our CLI (convert, read, compare, checksum)`, () => {
    const img = s.path(`q-${format}.qcow2`);
    qemuCreate(img, format);
    must('qemu-io', ['--object', SECRET, '--image-opts', opts(img), '-c', 'write -P 0xa5 0 1M', '-c', 'write -P 0x3c 2M 64k', '-c', 'write -P 0x11 4M 512']);
    const expected = qemuPlain(opts(img));
    assert.ok(ourPlain(opts(img)).equals(expected), 'convert --image-opts to raw equals qemu-img convert');
    const piece = dwOk(['read', ...OBJ, '--image-opts', opts(img), String((2 << 20) - 512), '4096']).stdoutBytes;
    assert.ok(piece.equals(expected.subarray((2 << 20) - 512, (2 << 20) + 3584)), 'read across an allocation edge');
    const raw = s.path(`q-${format}.raw`);
    writeFileSync(raw, expected);
    // compare with --image-opts for the encrypted image, a plain name for the other (qemu-img wants image-opts for both).
    assert.equal(dw(['compare', ...OBJ, '--image-opts', opts(img), raw]).status, 0);
    const ours = dwOk(['checksum', ...OBJ, '--image-opts', opts(img)]).stdout.split(' ')[0];
    assert.equal(ours, dwOk(['checksum', raw]).stdout.split(' ')[0], 'checksum of the encrypted image equals that of its plain content');
  });

  test(`${format}: an image our CLI encrypts is decrypted identically by qemu-img, passes its check and takes qemu-io's writes`, () => {
    const { path: raw, data } = randomRaw(`plain-${format}.raw`);
    const img = s.path(`ours-${format}.qcow2`);
    const o = `encrypt.format=${format},encrypt.key-secret=s0${format === 'luks' ? ',encrypt.iter-time=10' : ''}`;
    dwOk(['convert', ...OBJ, '-O', 'qcow2', '-o', o, raw, img]);
    assert.ok(qemuPlain(opts(img)).equals(data), 'qemu-img decrypts what we wrote');
    qemuCheckClean(img);
    assertNoPlain(img, data);
    // qemu-io writes into our image; we read them through the CLI.
    must('qemu-io', ['--object', SECRET, '--image-opts', opts(img), '-c', 'write -P 0x77 64k 128k', '-c', 'write -z 3M 64k']);
    const got = dwOk(['read', ...OBJ, '--image-opts', opts(img), '0', String(SIZE)]).stdoutBytes;
    const want = Buffer.from(data);
    want.fill(0x77, 64 << 10, 192 << 10);
    want.fill(0, 3 << 20, (3 << 20) + (64 << 10));
    assert.ok(got.equals(want), 'our read of qemu-io writes');
    // Our write, then qemu reads it.
    const patch = s.path('patch.bin');
    writeFileSync(patch, Buffer.alloc(1000, 0xee));
    dwOk(['write', ...OBJ, '--image-opts', opts(img), '12345', patch]);
    want.fill(0xee, 12345, 13345);
    assert.ok(qemuPlain(opts(img)).equals(want), 'qemu-img reads our unaligned write');
    qemuCheckClean(img);
  });

  test(`${format}: create -o encrypt.key-secret makes an image qemu-img opens with the key`, () => {
    const img = s.path(`created-${format}.qcow2`);
    const o = `encrypt.format=${format},encrypt.key-secret=s0${format === 'luks' ? ',encrypt.iter-time=10,encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv' : ''}`;
    dwOk(['create', '-q', '-f', 'qcow2', ...OBJ, '-o', o, img, '3M']);
    must('qemu-io', ['--object', SECRET, '--image-opts', opts(img), '-c', 'write -P 0x42 1M 4k']);
    must('qemu-io', ['--object', SECRET, '--image-opts', opts(img), '-c', 'read -P 0x42 1M 4k', '-c', 'read -P 0 0 1M']);
    qemuCheckClean(img);
    const info = JSON.parse(must('qemu-img', ['info', '--output', 'json', img]).stdout);
    assert.equal(info.encrypted, true);
    assert.equal(info['format-specific'].data.encrypt.format, format);
    if (format === 'luks') {
      assert.equal(info['format-specific'].data.encrypt['cipher-alg'], 'aes-128');
      assert.equal(info['format-specific'].data.encrypt['cipher-mode'], 'cbc');
      assert.equal(info['format-specific'].data.encrypt['ivgen-alg'], 'essiv');
    }
  });
}

test('without the key: info JSON gives the encrypted flag and encrypt details as qemu-img; map and check work; data commands refuse in one plain line naming the way to give it', () => {
  const img = s.path('nokey.qcow2');
  qemuCreate(img, 'luks');
  must('qemu-io', ['--object', SECRET, '--image-opts', opts(img), '-c', 'write -P 0x5a 64k 1M']);
  const aes = s.path('nokey-aes.qcow2');
  qemuCreate(aes, 'aes');
  const ours = s.path('nokey-ours.qcow2');
  dwOk(['create', '-q', '-f', 'qcow2', ...OBJ, '-o', 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10', ours, '1M']);
  for (const path of [img, aes, ours]) {
    const q = JSON.parse(must('qemu-img', ['info', '--output', 'json', path]).stdout);
    const ours = JSON.parse(dwOk(['info', '--output', 'json', path]).stdout);
    assert.equal(ours.encrypted, q.encrypted);
    assert.deepEqual(ours['format-specific'].data.encrypt, q['format-specific'].data.encrypt, `encrypt of ${path}`);
  }
  const before = snapshotOf(img);
  // map: qemu-img needs the key; ours does not, and says the same.
  const qmap = JSON.parse(must('qemu-img', ['map', '--output', 'json', ...OBJ, '--image-opts', opts(img)]).stdout);
  const ourMap = JSON.parse(dwOk(['map', '--output', 'json', img]).stdout);
  assert.deepEqual(
    ourMap.map((e: any) => [e.start, e.length, e.data, e.zero]),
    qmap.map((e: any) => [e.start, e.length, e.data, e.zero]),
  );
  const check = dw(['check', img]);
  assert.equal(check.status, 0, check.stderr);
  assert.match(check.stdout, /No errors were found/);
  for (const args of [['read', img, '0', '512'], ['convert', '-O', 'raw', img, s.path('nokey.raw')], ['checksum', img]]) {
    const line = assertPlainError(args, /nokey\.qcow2: the image is encrypted: a passphrase is needed.*--object secret,id=.*encrypt\.key-secret=/);
    assert.ok(!line.includes(PASS));
  }
  assert.equal(existsSync(s.path('nokey.raw')), false, 'no target left');
  assert.deepEqual(snapshotOf(img), before, 'the image is untouched');
});

test('a wrong passphrase: one plain line, no target left, the image untouched; an unknown secret id and bad --object forms are plain errors', () => {
  const img = s.path('wrong.qcow2');
  qemuCreate(img, 'luks');
  must('qemu-io', ['--object', SECRET, '--image-opts', opts(img), '-c', 'write -P 0x5a 0 64k']);
  const before = snapshotOf(img);
  const WRONG = ['--object', `secret,id=s0,file=${wrongFile}`];
  const target = s.path('wrong-target.raw');
  for (const args of [
    ['convert', ...WRONG, '--image-opts', opts(img), '-O', 'raw', target],
    ['read', ...WRONG, '--image-opts', opts(img), '0', '512'],
    ['write', ...WRONG, '--image-opts', opts(img), '0', passFile],
    ['resize', ...WRONG, '--image-opts', opts(img), '10M'],
    ['compare', ...WRONG, '--image-opts', opts(img), opts(img)],
  ]) {
    const r = dw(args);
    assert.notEqual(r.status, 0, args.join(' '));
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /wrong\.qcow2: the passphrase does not open any key slot$/);
    assert.ok(!r.stderr.includes('not-the-passphrase') && !r.stdout.includes('not-the-passphrase'));
  }
  assert.equal(existsSync(target), false);
  assert.deepEqual(readdirSync(s.dir).filter((n) => n.startsWith('wrong-target')), [], 'no temporary file either');
  assert.deepEqual(snapshotOf(img), before, 'the image is untouched');
  assertPlainError(['read', ...OBJ, '--image-opts', opts(img, 'nope'), '0', '512'], /No secret with id 'nope'/);
  assertPlainError(['read', '--object', 'secret,id=s0', '--image-opts', opts(img), '0', '512'], /either 'data' or 'file' must be provided/);
  assertPlainError(['read', '--object', `secret,id=s0,data=x,file=${passFile}`, '--image-opts', opts(img), '0', '512'], /mutually exclusive/);
  assertPlainError(['read', '--object', 'iothread,id=t0', img, '0', '512'], /only secret objects/);
  assertPlainError(['read', '--object', 'secret,id=s0,data=x,format=hex', img, '0', '512'], /raw or base64/);
  assertPlainError(['read', '--object', 'secret,id=s0,data=x', '--object', 'secret,id=s0,data=y', img, '0', '512'], /duplicate/);
  assertPlainError(['read', '-f', 'qcow2', ...OBJ, '--image-opts', opts(img), '0', '512'], /mutually exclusive/);
  assertPlainError(['read', ...OBJ, '--image-opts', `${opts(img)},bogus=1`, '0', '512'], /option 'bogus' is not supported/);
  assertPlainError(['convert', ...OBJ, '--target-image-opts', '-O', 'qcow2', img, opts(s.path('t.qcow2'))], /requires use of -n/);
});

test('the secret forms qemu takes: data=, file=, format=base64 (data and file), the JSON form; the passphrase stops at a NUL as in qemu', () => {
  const img = s.path('forms.qcow2');
  qemuCreate(img, 'luks');
  must('qemu-io', ['--object', SECRET, '--image-opts', opts(img), '-c', 'write -P 0x61 0 4k']);
  const b64File = s.path('pass.b64');
  writeFileSync(b64File, Buffer.from(PASS).toString('base64') + '\n');
  const expected = Buffer.alloc(4096, 0x61);
  for (const object of [
    `secret,id=s0,data=${PASS.replace(/,/g, ',,')}`,
    `secret,id=s0,data=${Buffer.from(PASS).toString('base64')},format=base64`,
    `secret,id=s0,file=${b64File},format=base64`,
    JSON.stringify({ 'qom-type': 'secret', id: 's0', file: passFile }),
  ]) {
    const r = dw(['read', '--object', object, '--image-opts', opts(img), '0', '4096']);
    assert.equal(r.status, 0, `${object}: ${r.stderr}`);
    assert.ok(r.stdoutBytes.equals(expected), object);
  }
  // --object=VALUE and the secret after the command's own flags work too.
  assert.equal(dw(['read', '--image-opts', opts(img), `--object=${SECRET}`, '0', '4096']).status, 0);
});

test('convert an encrypted image to a plain one (decrypt), a plain one to LUKS, and LUKS to AES with another key; -c into an encrypted target is refused', () => {
  const { path: raw, data } = randomRaw('chain-src.raw');
  const luks = s.path('conv.luks.qcow2');
  dwOk(['convert', ...OBJ, '-O', 'qcow2', '-o', 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10', raw, luks]);
  const plain = s.path('conv.plain.qcow2');
  dwOk(['convert', ...OBJ, '--image-opts', opts(luks), '-O', 'qcow2', plain]);
  assert.equal(JSON.parse(must('qemu-img', ['info', '--output', 'json', plain]).stdout).encrypted, undefined, 'the copy is not encrypted');
  assert.equal(must('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', plain, raw]).status, 0);
  // Re-encrypt under a different secret: the source's key and the target's are distinct objects.
  const aes = s.path('conv.aes.qcow2');
  const other = s.path('pass2');
  writeFileSync(other, 'second-key');
  dwOk(['convert', ...OBJ, '--object', `secret,id=s1,file=${other}`, '--image-opts', opts(luks), '-O', 'qcow2', '-o', 'encrypt.format=aes,encrypt.key-secret=s1', aes]);
  const viaQemu = s.path('conv.aes.raw');
  must('qemu-img', ['convert', '--object', `secret,id=s1,file=${other}`, '--image-opts', opts(aes, 's1'), '-O', 'raw', viaQemu]);
  assert.ok(readFileSync(viaQemu).equals(data));
  const compressed = s.path('conv.c.qcow2');
  assertPlainError(['convert', '-c', ...OBJ, '-O', 'qcow2', '-o', 'encrypt.format=luks,encrypt.key-secret=s0', raw, compressed], /compressed clusters .* encrypted image/);
  assert.equal(existsSync(compressed), false);
  // --keep-snapshots into an encrypted target: the snapshot's content too, as qemu-img decrypts it.
  const snapped = s.path('conv.snapped.qcow2');
  must('qemu-img', ['snapshot', ...OBJ, '-c', 'before', '--image-opts', opts(luks)]);
  must('qemu-io', ['--object', SECRET, '--image-opts', opts(luks), '-c', 'write -P 0x99 0 64k']);
  dwOk(['convert', '--keep-snapshots', ...OBJ, '--image-opts', opts(luks), '-O', 'qcow2', '-o', 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10', snapped]);
  const atSnapshot = s.path('conv.snapped.before.raw');
  must('qemu-img', ['convert', ...OBJ, '-l', 'before', '--image-opts', opts(snapped), '-O', 'raw', atSnapshot]);
  assert.ok(readFileSync(atSnapshot).equals(data), 'the snapshot in the encrypted copy');
  const now = Buffer.from(data);
  now.fill(0x99, 0, 64 << 10);
  assert.ok(qemuPlain(opts(snapped)).equals(now), 'the current state in the encrypted copy');
  qemuCheckClean(snapped);
  // convert -n into an existing encrypted image named by --target-image-opts.
  const existing = s.path('conv.existing.qcow2');
  qemuCreate(existing, 'luks');
  dwOk(['convert', '-n', ...OBJ, '--target-image-opts', raw, opts(existing)]);
  assert.ok(qemuPlain(opts(existing)).equals(data));
});

test('backing chains with encrypted members: a plain overlay on a LUKS base, a LUKS overlay on an AES base; commit, rebase, compare and map across them', () => {
  const { path: raw, data } = randomRaw('base.raw');
  const base = s.path('base.luks.qcow2');
  dwOk(['convert', ...OBJ, '-O', 'qcow2', '-o', 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10', raw, base]);
  const overlay = s.path('overlay.plain.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-b', base, '-F', 'qcow2', overlay, String(SIZE)]);
  const chainOpts = `driver=qcow2,file.filename=${overlay},backing.encrypt.key-secret=s0`;
  must('qemu-io', ['--object', SECRET, '--image-opts', chainOpts, '-c', 'write -P 0x99 128k 64k']);
  const want = Buffer.from(data);
  want.fill(0x99, 128 << 10, 192 << 10);
  assert.ok(qemuPlain(chainOpts).equals(want), 'qemu reads the chain as expected');
  assert.ok(ourPlain(chainOpts).equals(want), 'our CLI reads the chain with backing.encrypt.key-secret');
  // The overlay's own map needs no key at all.
  assert.equal(dw(['map', overlay]).status, 0);
  // An encrypted overlay (its own key s1) on an AES base (key s0).
  const aesBase = s.path('base.aes.qcow2');
  dwOk(['convert', ...OBJ, '-O', 'qcow2', '-o', 'encrypt.format=aes,encrypt.key-secret=s0', raw, aesBase]);
  const other = s.path('pass3');
  writeFileSync(other, 'overlay-key');
  const OBJ2 = [...OBJ, '--object', `secret,id=s1,file=${other}`];
  const encOverlay = s.path('overlay.luks.qcow2');
  dwOk(['create', '-q', '-f', 'qcow2', ...OBJ2, '-b', aesBase, '-F', 'qcow2', '-o', 'encrypt.format=luks,encrypt.key-secret=s1,encrypt.iter-time=10', encOverlay]);
  const encChain = `driver=qcow2,file.filename=${encOverlay},encrypt.key-secret=s1,backing.encrypt.key-secret=s0`;
  const p2 = s.path('p2.bin');
  writeFileSync(p2, Buffer.alloc(8192, 0x31));
  dwOk(['write', ...OBJ2, '--image-opts', encChain, '4096', p2]);
  const want2 = Buffer.from(data);
  want2.fill(0x31, 4096, 4096 + 8192);
  const q2 = s.path('q2.raw');
  must('qemu-img', ['convert', ...OBJ2, '--image-opts', encChain, '-O', 'raw', q2]);
  assert.ok(readFileSync(q2).equals(want2), 'qemu reads our write through an encrypted overlay over an encrypted base');
  assert.equal(dw(['compare', ...OBJ2, '--image-opts', encChain, q2]).status, 0);
  run('qemu-img', ['check', ...OBJ2, '--image-opts', encChain]);
  // commit the LUKS overlay into the AES base (two keys), then the base alone holds the data.
  dwOk(['commit', '-q', ...OBJ2, '--image-opts', encChain]);
  assert.ok(qemuPlain(opts(aesBase)).equals(want2), 'the committed base, decrypted by qemu-img');
  qemuCheckClean(aesBase);
  // rebase the plain overlay off its LUKS base (safe mode reads the old base, decrypted) onto a plain one.
  const plainBase = s.path('base.plain.qcow2');
  must('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', q2, plainBase]);
  dwOk(['rebase', ...OBJ, '--image-opts', chainOpts, '-b', plainBase, '-F', 'qcow2']);
  const rebased = s.path('rebased.raw');
  must('qemu-img', ['convert', '-O', 'raw', overlay, rebased]);
  assert.ok(readFileSync(rebased).equals(want), 'the overlay reads the same over its new, plain base');
});

test('snapshot, resize and check with --image-opts on an encrypted image, judged by qemu-img', () => {
  const img = s.path('ops.qcow2');
  qemuCreate(img, 'luks', 2 << 20);
  must('qemu-io', ['--object', SECRET, '--image-opts', opts(img), '-c', 'write -P 0x21 0 64k']);
  dwOk(['snapshot', ...OBJ, '-c', 'first', '--image-opts', opts(img)]);
  must('qemu-io', ['--object', SECRET, '--image-opts', opts(img), '-c', 'write -P 0x22 0 64k']);
  assert.match(must('qemu-img', ['snapshot', ...OBJ, '-l', '--image-opts', opts(img)]).stdout, /first/);
  dwOk(['resize', '-q', ...OBJ, '--image-opts', opts(img), '4M']);
  const info = JSON.parse(must('qemu-img', ['info', '--output', 'json', img]).stdout);
  assert.equal(info['virtual-size'], 4 << 20);
  dwOk(['snapshot', ...OBJ, '-a', 'first', '--image-opts', opts(img)]);
  must('qemu-io', ['--object', SECRET, '--image-opts', opts(img), '-c', 'read -P 0x21 0 64k']);
  qemuCheckClean(img);
  const check = dw(['check', ...OBJ, '--image-opts', opts(img)]);
  assert.equal(check.status, 0, check.stderr);
});

test('the passphrase is in no command line while our CLI works (we start no process that could show it) and in none of our output', async () => {
  const { path: raw } = randomRaw('ps.raw', 48 << 20);
  const img = s.path('ps.qcow2');
  const child = spawn(process.execPath, [CLI, 'convert', ...OBJ, '-O', 'qcow2', '-o', 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10', raw, img], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (c) => (output += c));
  child.stderr.on('data', (c) => (output += c));
  const done = new Promise<number | null>((res) => child.on('exit', res));
  let looks = 0;
  let exited = false;
  void done.then(() => (exited = true));
  while (!exited) {
    for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
      let cmdline = '';
      try {
        cmdline = readFileSync(`/proc/${pid}/cmdline`, 'latin1');
      } catch {
        continue; // gone
      }
      assert.ok(!cmdline.includes(PASS), `process ${pid} shows the passphrase: ${cmdline.replace(/\0/g, ' ')}`);
    }
    try {
      const children = readdirSync(`/proc/${child.pid}/task`).map((t) => readFileSync(`/proc/${child.pid}/task/${t}/children`, 'latin1').trim()).join('');
      assert.equal(children, '', 'our CLI starts no process');
    } catch {
      // it exited between the checks
    }
    looks++;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(await done, 0, output);
  assert.ok(looks > 0);
  assert.ok(!output.includes(PASS));
  assert.equal(readFileSync(img).indexOf(Buffer.from(PASS)), -1, 'the passphrase is not in the image');
});
