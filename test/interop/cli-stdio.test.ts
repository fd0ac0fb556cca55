/**
 * The command line prints its lines with write(2) on descriptors 1 and 2 (cli/stdio.ts) instead of building
 * Node's stdout stream at start-up. Where that direct write fails it must hand the rest to the stream without
 * losing or reordering a byte: here stdout is a pipe made non-blocking by the parent and left unread until it
 * is full, so the direct write meets EAGAIN part-way through a long `map --output json`. What arrives must be
 * what qemu-img map says of the same file, and what a plain pipe gets. Needs the build and python3 (to make the
 * non-blocking pipe); no timings.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { CLI, must, scratch } from '../helpers';

const s = scratch('dw-stdio-');
after(() => s.cleanup());

/** A raw file with 4 KiB of data in every other 4 KiB block of 8 MiB: its map has 2048 extents (~150 KB of JSON). */
const image = s.path('striped.raw');
const fd = openSync(image, 'w');
try {
  const block = Buffer.alloc(4096, 0x5a);
  for (let off = 0; off < 8 << 20; off += 8192) writeSync(fd, block, 0, block.length, off);
  writeSync(fd, Buffer.alloc(1), 0, 1, (8 << 20) - 1);
} finally {
  closeSync(fd);
}

// Starts the CLI with a non-blocking pipe as stdout, waits (FIONREAD) until the pipe is full or the CLI has ended,
// then reads everything. Prints what it read as hex on stdout and the CLI's exit code and stderr on stderr.
const NONBLOCKING_PIPE = `
import os, sys, fcntl, termios, struct, subprocess, time
r, w = os.pipe()
os.set_blocking(w, False)
p = subprocess.Popen(sys.argv[1:], stdout=w, stderr=subprocess.PIPE)
os.close(w)
full = 0
while p.poll() is None:
    n = struct.unpack('i', fcntl.ioctl(r, termios.FIONREAD, b'\\0\\0\\0\\0'))[0]
    if n >= 65536:
        full = n
        break
    time.sleep(0.01)
chunks = []
while True:
    b = os.read(r, 1 << 16)
    if not b:
        break
    chunks.append(b)
err = p.stderr.read()
p.wait()
sys.stdout.write(b''.join(chunks).hex())
sys.stderr.write('exit=%d full=%d\\n%s' % (p.returncode, full, err.decode()))
`;

test('a non-blocking stdout that fills up: the rest goes through the stream, nothing lost', () => {
  const args = [process.execPath, CLI, 'map', '--output', 'json', '-f', 'raw', image];
  const r = spawnSync('python3', ['-c', NONBLOCKING_PIPE, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  assert.equal(r.status, 0, r.stderr);
  const [status, ...rest] = r.stderr.split('\n');
  assert.match(status, /^exit=0 full=\d+$/, r.stderr);
  assert.ok(Number(/full=(\d+)/.exec(status)![1]) >= 65536, `the pipe never filled, so EAGAIN was not met: ${status}`);
  assert.equal(rest.join('\n').trim(), '');
  const got = Buffer.from(r.stdout, 'hex').toString('utf8');
  const plain = must(process.execPath, [CLI, 'map', '--output', 'json', '-f', 'raw', image]).stdout;
  assert.ok(plain.length > 100_000, `the map is only ${plain.length} bytes: it would not fill a pipe`);
  assert.equal(got, plain);
  const theirs = must('qemu-img', ['map', '--output', 'json', '-f', 'raw', image]).stdout;
  assert.equal(got.replace(/\s/g, ''), theirs.replace(/\s/g, ''));
});

test('lines to stdout and stderr keep their order when both go to one pipe', () => {
  // check of a raw image: no check for the format (exit 63) after nothing on stdout; an error after usage text.
  const r = spawnSync('/bin/sh', ['-c', `"${process.execPath}" "${CLI}" info -f raw "${image}" 2>&1; "${process.execPath}" "${CLI}" info "${s.path('missing')}" 2>&1`], { encoding: 'utf8' });
  const lines = r.stdout.trim().split('\n');
  assert.match(lines[0], /^image: /);
  assert.match(lines[lines.length - 1], /^diskwright: .*missing/);
});
