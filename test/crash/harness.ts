/**
 * The crash-injection harness: runs a writer (our CLI, built dist/) in a child process with inject.cjs
 * preloaded, once to count its I/O steps and then stopped at step N for N across them (kill: the process
 * dies, what it wrote stays; cut: a power cut, writes since the last completed sync are lost too), and after
 * each stop checks the image with the oracles: qemu-img check shows no corruption (leaks are allowed), every
 * sector holds its old or its new content, a source is untouched, a convert target is absent or complete.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync, readFileSync, rmSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, must, run } from '../helpers';

const INJECT = join(__dirname, 'inject.cjs');
export const FULL = process.env.DISKWRIGHT_CRASH_FULL === '1';
/** Steps tried per writer and crash mode in a normal run (every step under DISKWRIGHT_CRASH_FULL=1). */
export const SAMPLE = Number(process.env.DISKWRIGHT_CRASH_SAMPLE || 8);

export type CrashMode = 'kill' | 'cut' | 'reorder';
/** The crash modes tried (inject.cjs says what each models); DISKWRIGHT_CRASH_MODES=kill,cut,reorder to choose. */
export const MODES = (process.env.DISKWRIGHT_CRASH_MODES || 'kill,cut').split(',') as CrashMode[];

export interface WriterRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** Runs `diskwright ARGS` under the injector; `at` 0 = no crash. Returns what happened and, counting, the steps. */
export function runWriter(args: string[], opts: { at?: number; mode?: CrashMode; cwd?: string } = {}): WriterRun & { steps: number } {
  const countFile = join(opts.cwd ?? '/tmp', `.dw-crash-count-${process.pid}-${Math.random().toString(16).slice(2)}`);
  const env = { ...process.env, DW_CRASH_AT: String(opts.at ?? 0), DW_CRASH_MODE: opts.mode ?? 'kill', DW_CRASH_COUNT: countFile };
  const r = spawnSync(process.execPath, ['--require', INJECT, CLI, ...args], { cwd: opts.cwd, env, maxBuffer: 1 << 26 });
  if (r.error) throw r.error;
  let steps = -1;
  if (existsSync(countFile)) {
    steps = Number(readFileSync(countFile, 'utf8'));
    rmSync(countFile);
  }
  return { status: r.status, signal: r.signal, stderr: r.stderr.toString('utf8'), steps };
}

/** The steps to stop at: all of 1..total under FULL, else at most SAMPLE spread evenly (first and last kept). */
export function stepsToTry(total: number, max = SAMPLE): number[] {
  if (FULL || total <= max) return Array.from({ length: total }, (_, i) => i + 1);
  const out = new Set<number>();
  for (let k = 0; k < max; k++) out.add(1 + Math.round((k * (total - 1)) / (max - 1)));
  return [...out];
}

export interface QemuCheck {
  corruptions: number;
  leaks: number;
  checkErrors: number;
  text: string;
}

/** `qemu-img check` of an image: its counts from the JSON output (the human text kept for messages). */
export function qemuCheck(path: string, format: string): QemuCheck {
  const r = run('qemu-img', ['check', '-f', format, '--output', 'json', path]);
  let j: Record<string, number> = {};
  try {
    j = JSON.parse(r.stdout) as Record<string, number>;
  } catch {
    return { corruptions: -1, leaks: 0, checkErrors: 1, text: `qemu-img check exited ${r.status}: ${r.stderr}${r.stdout}` };
  }
  const counts = { corruptions: j.corruptions ?? 0, leaks: j.leaks ?? 0, checkErrors: j['check-errors'] ?? 0 };
  // The human text only where a message will quote it (one qemu-img run less per clean stop).
  if (counts.corruptions === 0 && counts.checkErrors === 0) return { ...counts, text: '' };
  const text = run('qemu-img', ['check', '-f', format, path]);
  return { ...counts, text: text.stdout + text.stderr };
}

/** The guest content of an image (or of one of its qcow2 snapshots) as qemu-img reads it. */
export function guestBytes(path: string, format: string, dir: string, snapshot?: string): Buffer {
  const out = join(dir, `.guest-${Math.random().toString(16).slice(2)}.raw`);
  const args = ['convert', '-f', format, '-O', 'raw', ...(snapshot !== undefined ? ['-l', `snapshot.name=${snapshot}`] : []), path, out];
  must('qemu-img', args);
  const b = readFileSync(out);
  rmSync(out);
  return b;
}

/** Every 512-byte sector of `got` equals the same sector of `old` or of `now` (sizes may differ by a resize). */
export function assertOldOrNew(got: Buffer, old: Buffer, now: Buffer, what: string): void {
  const SECTOR = 512;
  for (let p = 0; p < got.length; p += SECTOR) {
    const g = got.subarray(p, p + SECTOR);
    const fromOld = p < old.length && g.equals(old.subarray(p, p + SECTOR));
    const fromNew = p < now.length && g.equals(now.subarray(p, p + SECTOR));
    if (!fromOld && !fromNew) assert.fail(`${what}: sector ${p / SECTOR} holds neither its old nor its new content`);
  }
}

export interface SnapshotRow {
  id: string;
  name: string;
}

/** qemu-img snapshot -l, as id/name rows. */
export function qemuSnapshots(path: string): SnapshotRow[] {
  const r = must('qemu-img', ['snapshot', '-l', path]).stdout;
  const rows: SnapshotRow[] = [];
  for (const line of r.split('\n').slice(2)) {
    const m = /^(\S+)\s+(\S+)\s/.exec(line);
    if (m) rows.push({ id: m[1], name: m[2] });
  }
  return rows;
}

export interface CrashOutcome {
  step: number;
  mode: CrashMode;
  problem?: string;
}

export interface CrashCase {
  /** Image file name in the case's folder (the writer's target; copied fresh from `template` for every run). */
  image: string;
  format: string;
  /** Other files copied fresh for every run (e.g. a convert source): name -> template name. */
  extra?: Record<string, string>;
  args: string[];
  /** Checks one stopped run (throws an assertion error to report a problem). */
  verify: (dir: string, completed: boolean) => void;
  /** Stop at every step whatever SAMPLE says (for writers with few steps, where every one is to be proven). */
  everyStep?: boolean;
}

/**
 * Runs a case to completion once (counting steps), then stops it at each chosen step in both modes and
 * verifies. Templates are `template-<name>` in `dir`, made by the caller. Returns the outcomes with problems.
 */
export function crashEveryStep(dir: string, c: CrashCase, modes: CrashMode[] = MODES): { steps: number; tried: number; failures: CrashOutcome[] } {
  // Copies keep their template's times: a UML COW file names its backing file by its mtime.
  const copyAsIs = (from: string, to: string) => {
    copyFileSync(from, to);
    const st = statSync(from);
    utimesSync(to, st.atime, st.mtime);
  };
  const fresh = () => {
    for (const f of readdirSync(dir)) if (f.startsWith('.') && f.includes('.diskwright-')) rmSync(join(dir, f), { force: true });
    copyAsIs(join(dir, `template-${c.image}`), join(dir, c.image));
    for (const [name, tpl] of Object.entries(c.extra ?? {})) copyAsIs(join(dir, tpl), join(dir, name));
  };
  fresh();
  const full = runWriter(c.args, { cwd: dir });
  assert.equal(full.status, 0, `the writer failed without a crash: ${full.stderr}`);
  assert.ok(full.steps > 0, 'the writer took no I/O steps');
  c.verify(dir, true);
  const failures: CrashOutcome[] = [];
  let tried = 0;
  for (const mode of modes) {
    for (const step of c.everyStep ? stepsToTry(full.steps, full.steps) : stepsToTry(full.steps)) {
      fresh();
      const r = runWriter(c.args, { at: step, mode, cwd: dir });
      tried++;
      if (r.signal !== 'SIGKILL') {
        failures.push({ step, mode, problem: `the writer was not stopped (exit ${r.status}): ${r.stderr}` });
        continue;
      }
      try {
        c.verify(dir, false);
      } catch (err) {
        failures.push({ step, mode, problem: (err as Error).message.split('\n').slice(0, 6).join(' | ') });
      }
    }
  }
  // The figures, for the log: how many steps the writer takes, how many stops were tried, how many failed.
  console.log(`crash: diskwright ${c.args.join(' ')}: ${full.steps} steps, ${tried} stops (${modes.join('+')}), ${failures.length} failed`);
  return { steps: full.steps, tried, failures };
}

/** A qcow2 image after a crash: qemu-img check finds no corruption and no check error (leaks are allowed). */
export function assertLeaksOnly(path: string, format: string): void {
  const c = qemuCheck(path, format);
  if (c.corruptions !== 0 || c.checkErrors !== 0) assert.fail(`qemu-img check: ${c.corruptions} corruptions, ${c.checkErrors} check errors: ${c.text.trim()}`);
}

export function describe(failures: CrashOutcome[]): string {
  return failures.map((f) => `  step ${f.step} (${f.mode}): ${f.problem}`).join('\n');
}
