/**
 * What the commit crash tests share (test/crash/commit-*.test.ts): a two-image chain made by the oracles'
 * tools, `diskwright commit OVERLAY` stopped at every I/O step (harness.ts), and after each stop the checks the
 * issue asks for:
 * - our side: `diskwright info --backing-chain` opens the chain and `diskwright convert` reads it, with no
 *   accept flag, as the model (a commit does not change what the overlay reads);
 * - the base alone reads, sector by sector, as before or as after the commit (qemu-img, or the file for raw);
 * - the outside readers: qemu-img check finds no corruption in what qemu reads, qemu-img info opens the chain,
 *   and qemu-img compare (or uml_moo for COW) reads it as the model, except in the one state a two-file handover
 *   cannot avoid for a reader that takes a single identity (`inFlight`: the overlay already names the base's
 *   next identity, the base still has its old one), where qemu refuses to read and uml_moo refuses to merge, as
 *   they do after their own commits; those stops are counted and reported.
 * When the commit completed, the chain must be clean for the outside readers too (no state in flight).
 */
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, rmSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { dw, run } from '../helpers';
import { assertOldOrNew, guestBytes, qemuCheck, runWriter, type CrashCase } from './harness';

export interface CommitChainCase {
  /** The overlay's file name (committed) and its format. */
  overlay: string;
  format: string;
  /** The base's file name and format ('raw' for COW). */
  base: string;
  baseFormat: string;
  /** The chain's guest content before the commit (raw bytes). */
  model: Buffer;
  /** qemu-img opens the overlay with its chain (qcow2, VMDK; not a differencing VHDX, not COW). */
  qemuReadsChain: boolean;
  /** uml_moo merges the overlay (COW). */
  umlMoo?: boolean;
  /** True when the chain in `dir` is in the handover's in-flight state (see the file comment). */
  inFlight?: (dir: string) => boolean;
}

/** Copies the chain's files made under their own names to template-NAME, times kept (the harness copies them back). */
export function keepAsTemplates(dir: string, names: string[]): void {
  for (const n of names) {
    const from = join(dir, n);
    copyFileSync(from, join(dir, `template-${n}`));
    const st = statSync(from);
    utimesSync(join(dir, `template-${n}`), st.atime, st.mtime);
  }
}

/** Copies template-NAME back to NAME, times kept (as the harness does before each run). */
export function restoreTemplates(dir: string, names: string[]): void {
  for (const n of names) {
    const from = join(dir, `template-${n}`);
    copyFileSync(from, join(dir, n));
    const st = statSync(from);
    utimesSync(join(dir, n), st.atime, st.mtime);
  }
}

/**
 * The base as qemu-img reads it: the file itself for raw; a VHDX whose log a stop left pending is first
 * replayed as qemu does it (`qemu-img check -r all`, which qemu asks for before it opens one), on a copy.
 */
function qemuBase(dir: string, c: CommitChainCase): string {
  const p = join(dir, c.base);
  if (c.baseFormat !== 'vhdx') return p;
  const copy = join(dir, '.base-replayed.vhdx');
  copyFileSync(p, copy);
  run('qemu-img', ['check', '-q', '-r', 'all', '-f', 'vhdx', copy]);
  return copy;
}

/** The base's own content (`at`: qemuBase's path): qemu-img's reading, or the file itself for raw. */
function baseBytes(dir: string, c: CommitChainCase, at = qemuBase(dir, c)): Buffer {
  return c.baseFormat === 'raw' ? readFileSync(at) : guestBytes(at, c.baseFormat, dir);
}

/** The chain as `diskwright convert` reads it (no accept flag); fails the test when it cannot. */
function ourReading(dir: string, c: CommitChainCase): Buffer {
  const out = join(dir, '.ours.raw');
  rmSync(out, { force: true });
  const r = dw(['convert', '-O', 'raw', join(dir, c.overlay), out]);
  assert.equal(r.status, 0, `diskwright convert could not read the chain: ${r.stderr.trim()}`);
  const b = readFileSync(out);
  rmSync(out);
  return b;
}

export interface CommitCrashCounts {
  /** Stops where the outside reader refused, the handover being in flight. */
  inFlight: number;
  /** Stops checked. */
  checked: number;
}

/** The harness case: `diskwright commit OVERLAY`, every step, with the checks above. */
export function commitCrashCase(dir: string, c: CommitChainCase, counts: CommitCrashCounts): CrashCase {
  const baseBefore = baseBytes(dir, c);
  let baseAfter: Buffer | undefined;
  const modelPath = join(dir, 'model.raw');
  return {
    image: c.overlay,
    format: c.format,
    extra: { [c.base]: `template-${c.base}` },
    args: ['commit', '-f', c.format, c.overlay],
    everyStep: true,
    verify: (d, completed) => {
      counts.checked++;
      const ov = join(d, c.overlay);
      const info = dw(['info', '--backing-chain', ov]);
      assert.equal(info.status, 0, `diskwright info --backing-chain refused the chain: ${info.stderr.trim()}`);
      assert.doesNotMatch(info.stdout, /stale: true/, 'diskwright info calls the chain stale');
      assert.ok(ourReading(d, c).equals(c.model), 'diskwright reads the chain otherwise than before the commit');
      const baseAt = qemuBase(d, c);
      const base = baseBytes(d, c, baseAt);
      if (completed) baseAfter = base;
      assertOldOrNew(base, baseBefore, baseAfter!, 'the base');
      if (c.baseFormat !== 'raw') {
        const bc = qemuCheck(baseAt, c.baseFormat);
        if (bc.corruptions !== 0 || bc.checkErrors !== 0) assert.fail(`qemu-img check of the base: ${bc.text.trim()}`);
      }
      const flying = c.inFlight?.(d) ?? false;
      if (completed) assert.ok(!flying, 'the completed commit left the handover in flight');
      if (flying) counts.inFlight++;
      if (c.qemuReadsChain) {
        const oc = qemuCheck(ov, c.format);
        if (oc.corruptions !== 0 || oc.checkErrors !== 0) assert.fail(`qemu-img check of the overlay: ${oc.text.trim()}`);
        if (!flying) {
          // compare opens the whole chain, as info does, and reads it.
          const cmp = run('qemu-img', ['compare', '-f', c.format, '-F', 'raw', ov, modelPath]);
          assert.equal(cmp.status, 0, `qemu-img compare with the model: ${cmp.stdout.trim()} ${cmp.stderr.trim()}`);
        } else {
          const qi = run('qemu-img', ['info', '--backing-chain', '-f', c.format, ov]);
          assert.equal(qi.status, 0, `qemu-img info --backing-chain: ${qi.stderr.trim()}`);
        }
      }
      if (c.umlMoo && !flying) {
        const merged = join(d, '.merged.raw');
        rmSync(merged, { force: true });
        const m = run('uml_moo', [ov, merged]);
        assert.equal(m.status, 0, `uml_moo refused the pair: ${m.stderr.trim()}${m.stdout.trim()}`);
        const got = readFileSync(merged);
        rmSync(merged);
        assert.ok(got.equals(c.model), 'uml_moo merges the pair otherwise than the model');
      }
    },
  };
}

/**
 * A base changed by another writer is refused, whether our commit was stopped half-way or completed: the chain
 * (`overlay` over `base` in `dir`, both kept as templates) reads before the change and not after it.
 * `changeBase` writes into the base the way another program would.
 */
export function assertForeignBaseWriteRefused(dir: string, format: string, overlay: string, base: string, changeBase: () => void): void {
  const args = ['commit', '-f', format, overlay];
  const fresh = () => restoreTemplates(dir, [base, overlay]);
  fresh();
  const total = runWriter(args, { cwd: dir }).steps;
  for (const at of [Math.max(2, Math.floor(total / 2)), 0]) {
    fresh();
    const r = runWriter(args, { cwd: dir, at, mode: 'kill' });
    assert.equal(r.signal === 'SIGKILL', at !== 0, `the writer ${at ? 'was' : 'was not'} to be stopped: ${r.stderr}`);
    const read = () => dw(['convert', '-O', 'raw', join(dir, overlay), join(dir, 'read.raw')]);
    assert.equal(read().status, 0, 'the chain reads before the base is changed');
    changeBase();
    const refused = read();
    assert.notEqual(refused.status, 0, `a base changed by another writer was accepted (${at ? `commit stopped at step ${at}` : 'completed commit'})`);
    assert.match(refused.stderr, /stale|changed/);
  }
}
