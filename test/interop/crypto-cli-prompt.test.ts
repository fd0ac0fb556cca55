// The passphrase prompt on a terminal (util-linux `script` gives the CLI a pty): an encrypted image whose key was
// not given is asked for on stderr without echo; a wrong passphrase is asked again (three tries), then refused in
// the plain line; Ctrl-C cancels; create asks twice. Judged by what qemu-img/qemu-io read with the same passphrase.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { CLI, must, qemuImgLuks, scratch } from '../helpers';

const s = scratch('dw-crypto-prompt-');
after(s.cleanup);
const PASS = 'sw0rdfish-é';
const passFile = s.path('pass');
writeFileSync(passFile, PASS);
const OBJ = ['--object', `secret,id=s0,file=${passFile}`];
const opts = (path: string) => `driver=qcow2,file.filename=${path},encrypt.key-secret=s0`;

const PROMPT = /Passphrase for [^\n]*: |Type it again: /g;

/**
 * Runs our CLI on a pty and types `answers` (raw bytes, Enter included) one per prompt, as a person would: each
 * only once its prompt is shown, so that nothing typed reaches the terminal while it still echoes.
 */
function onTerminal(args: string[], answers: string[]): Promise<{ status: number | null; transcript: string }> {
  const cmd = [process.execPath, CLI, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const child = spawn('script', ['-qfec', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let transcript = '';
  let given = 0;
  const onOutput = (chunk: Buffer) => {
    transcript += chunk.toString('utf8');
    const shown = transcript.match(PROMPT)?.length ?? 0;
    while (given < shown && given < answers.length) child.stdin.write(answers[given++]);
  };
  child.stdout.on('data', onOutput);
  child.stderr.on('data', onOutput);
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  return new Promise((resolve) => {
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, transcript });
    });
  });
}

function luksImage(name: string): string {
  const img = s.path(name);
  qemuImgLuks(['create', '-q', '-f', 'qcow2', ...OBJ, '-o', 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10', img, '1M']);
  must('qemu-io', ['--object', `secret,id=s0,file=${passFile}`, '--image-opts', opts(img), '-c', 'write -P 0x6b 0 64k']);
  return img;
}

test('a passphrase typed at the prompt opens the image; nothing typed is echoed; backspace edits', async () => {
  const img = luksImage('typed.qcow2');
  const out = s.path('typed.out');
  // "xy", two backspaces, then the passphrase (with a two-byte character) and Enter.
  const r = await onTerminal(['read', img, '0', '65536', out], [`xy\x7f\x7f${PASS}\r`]);
  assert.equal(r.status, 0, r.transcript);
  assert.match(r.transcript, /Passphrase for [^\n]*typed\.qcow2: /);
  // The prompt names the image, whose random scratch folder may hold any two letters ("HYxyW2"): look past it.
  const typedShown = r.transcript.split(img).join('');
  assert.ok(!typedShown.includes(PASS) && !typedShown.includes('xy'), `echoed: ${JSON.stringify(r.transcript)}`);
  assert.ok(readFileSync(out).equals(Buffer.alloc(65536, 0x6b)));
});

test('a wrong passphrase is asked again; three wrong ones end in the plain line and a non-zero exit', async () => {
  const img = luksImage('retry.qcow2');
  const out = s.path('retry.raw');
  const again = await onTerminal(['convert', '-O', 'raw', img, out], ['wrong\r', `${PASS}\r`]);
  assert.equal(again.status, 0, again.transcript);
  assert.match(again.transcript, /try again/);
  assert.equal((again.transcript.match(PROMPT) ?? []).length, 2);
  assert.ok(readFileSync(out).subarray(0, 65536).equals(Buffer.alloc(65536, 0x6b)));
  const out2 = s.path('retry2.raw');
  const no = await onTerminal(['convert', '-O', 'raw', img, out2], ['a\r', 'b\r', 'c\r']);
  assert.equal(no.status, 1, no.transcript);
  assert.equal((no.transcript.match(PROMPT) ?? []).length, 3);
  assert.match(no.transcript, /diskwright: [^\n]*retry\.qcow2: the passphrase does not open any key slot/);
  assert.equal(existsSync(out2), false, 'no target left');
});

test('Ctrl-C at the prompt cancels (exit 130); a secret given with --object is never asked for', async () => {
  const img = luksImage('cancel.qcow2');
  const r = await onTerminal(['read', img, '0', '512', s.path('cancel.out')], ['\x03']);
  assert.equal(r.status, 130, r.transcript);
  assert.match(r.transcript, /cancelled/);
  const given = await onTerminal(['read', '--object', `secret,id=s0,data=wrong`, '--image-opts', opts(img), '0', '512', s.path('given.out')], []);
  assert.equal(given.status, 1, given.transcript);
  assert.doesNotMatch(given.transcript, PROMPT);
  assert.match(given.transcript, /the passphrase does not open any key slot/);
});

test('create -o encrypt.format=luks without a secret asks twice on a terminal; qemu opens the image with that passphrase', async () => {
  const img = s.path('asked.qcow2');
  const r = await onTerminal(['create', '-q', '-f', 'qcow2', '-o', 'encrypt.format=luks,encrypt.iter-time=10', img, '1M'], [`${PASS}\r`, `${PASS}\r`]);
  assert.equal(r.status, 0, r.transcript);
  assert.ok(!r.transcript.includes(PASS));
  must('qemu-io', [...OBJ, '--image-opts', opts(img), '-c', 'write -P 0x12 0 4k', '-c', 'read -P 0x12 0 4k']);
  const differ = s.path('differ.qcow2');
  const d = await onTerminal(['create', '-q', '-f', 'qcow2', '-o', 'encrypt.format=luks,encrypt.iter-time=10', differ, '1M'], ['one\r', 'two\r']);
  assert.equal(d.status, 1, d.transcript);
  assert.match(d.transcript, /the two passphrases differ/);
  assert.equal(existsSync(differ), false);
});
