/** Shared helpers for the test suites: scratch folders, running our CLI and the qemu oracles. */
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { OpenOptions } from '../src-main/block/types';

export const ROOT = join(__dirname, '..');
export const CLI = join(ROOT, 'bin', 'diskwright.js');

/** A scratch folder removed when the returned cleanup runs (use with t.after / after). */
export function scratch(prefix = 'dw-test-'): { dir: string; path: (name: string) => string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, path: (name) => join(dir, name), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
}

function result(r: SpawnSyncReturns<Buffer>): RunResult {
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8'), stdoutBytes: r.stdout };
}

/** Runs `diskwright ARGS` (the built CLI) and returns its exit status and output. */
export function dw(args: string[], opts: { cwd?: string; input?: Buffer } = {}): RunResult {
  return result(spawnSync(process.execPath, [CLI, ...args], { cwd: opts.cwd, input: opts.input, maxBuffer: 1 << 30 }));
}

/** Runs a command (qemu-img, qemu-io, ...) and returns its exit status and output. */
export function run(cmd: string, args: string[], opts: { cwd?: string; input?: Buffer } = {}): RunResult {
  return result(spawnSync(cmd, args, { cwd: opts.cwd, input: opts.input, maxBuffer: 1 << 30 }));
}

/** Runs a command that must succeed; throws with its stderr otherwise. */
export function must(cmd: string, args: string[], opts: { cwd?: string; input?: Buffer } = {}): RunResult {
  const r = run(cmd, args, opts);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr || r.stdout}`);
  return r;
}

/**
 * qemu-img making a LUKS volume (create, or convert to an encrypted target), which must succeed. Its PBKDF2
 * benchmark sometimes measures 0 ms of CPU and gives up ("Unable to get accurate CPU usage"): that, and only
 * that, is retried. With sha1, whose first round of the benchmark is shorter than the clock's step here, half of
 * the attempts fail (10 of 20 while the full suite ran); four attempts failed the whole run once, so up to 20
 * (a failing attempt costs a few milliseconds).
 */
export function qemuImgLuks(args: string[]): RunResult {
  for (let attempt = 1; ; attempt++) {
    const r = run('qemu-img', args);
    if (r.status === 0) return r;
    if (attempt < 20 && /Unable to get accurate CPU usage/.test(r.stderr)) continue;
    throw new Error(`qemu-img ${args.join(' ')} exited ${r.status}: ${r.stderr || r.stdout}`);
  }
}

/** `diskwright` that must succeed. */
export function dwOk(args: string[], opts: { cwd?: string; input?: Buffer } = {}): RunResult {
  const r = dw(args, opts);
  if (r.status !== 0) throw new Error(`diskwright ${args.join(' ')} exited ${r.status}: ${r.stderr || r.stdout}`);
  return r;
}

/** qemu-io over an image with a list of -c commands (write -P, write -z, discard, read -P …); throws if it fails. The oracles (oracles.ts) build on it. */
export function qemuIo(image: string, format: string, commands: string[]): RunResult {
  return must('qemu-io', ['-f', format, ...commands.flatMap((c) => ['-c', c]), image]);
}

/** mulberry32: a small seeded generator, so that a failing random case names a reproducible seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A command of ours that must fail with one plain line (a DiskError), never a stack trace. */
export function assertPlainError(args: string[], pattern?: RegExp): string {
  const r = dw(args);
  assert.equal(r.status, 1, `diskwright ${args.join(' ')} should exit 1; got ${r.status}: ${r.stdout}${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`);
  assert.match(lines[0], /^diskwright: /);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  if (pattern) assert.match(lines[0], pattern);
  return lines[0];
}

/** Open options for a format driver opened directly by a test: writable, with no backing file to follow. */
export const OPEN_WRITABLE_NO_BACKING: OpenOptions = {
  readOnly: false,
  backingPolicy: 'none',
  openBacking: async () => {
    throw new Error('no backing');
  },
};
