/**
 * Operations of the qcow2 differential test: a seeded generator of mixed guest operations, and the two
 * executors that carry each one out on our copy (diskwright CLI and the library) and on qemu's copy
 * (qemu-io, qemu-img). Every operation prints as one line, so a failing run names a replayable sequence.
 */
import { writeFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { dw, run, seededRandom } from '../helpers';
import { openImage } from '../../src-main/registry';

/** A seeded generator (mulberry32, from helpers) with the picks the operation generator needs. */
export class Prng {
  readonly next: () => number;
  constructor(seed: number) {
    this.next = seededRandom(seed);
  }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

/** A guest I/O inside one open device. */
export type IoOp =
  | { k: 'write'; off: number; len: number; tag: number } // pattern data
  | { k: 'zerodata'; off: number; len: number } // zeros written as data
  | { k: 'wz'; off: number; len: number } // writeZeroes / qemu-io write -z
  | { k: 'discard'; off: number; len: number };

export type Op =
  | IoOp
  | { k: 'snap-c' | 'snap-a' | 'snap-d'; name: string }
  | { k: 'grow'; by: number }
  | { k: 'batch'; ops: IoOp[] };

export function describeOp(op: Op): string {
  switch (op.k) {
    case 'write':
      return `write ${op.off}+${op.len} tag ${op.tag}`;
    case 'zerodata':
    case 'wz':
    case 'discard':
      return `${op.k} ${op.off}+${op.len}`;
    case 'snap-c':
    case 'snap-a':
    case 'snap-d':
      return `${op.k} ${op.name}`;
    case 'grow':
      return `grow +${op.by}`;
    case 'batch':
      return `batch [${op.ops.map(describeOp).join('; ')}]`;
  }
}

/** Recognizable, position-dependent data: a shifted copy or a lost sector shows up in compare. */
export function pattern(len: number, tag: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (tag * 37 + (i >> 9) * 11 + i) & 0xff || 0xa5;
  // Each 512-byte piece begins with the tag and its index, so a misplaced sector is named in a hex dump.
  for (let i = 0; i + 8 <= len; i += 512) {
    b.writeUInt32BE(tag, i);
    b.writeUInt32BE(i >> 9, i + 4);
  }
  return b;
}

export interface GenState {
  size: number;
  cluster: number;
  /** Guest bytes one L2 table maps. */
  l2Span: number;
  snapshots: boolean;
  names: string[];
  /** v2 images cannot be resized while they hold snapshots (qemu refuses). */
  v2: boolean;
  maxSize: number;
  nextName: number;
  nextTag: number;
}

function pickOffset(r: Prng, st: GenState, len: number): number {
  const max = st.size - len;
  const near = (boundary: number) => Math.min(max, Math.max(0, boundary + r.int(-700, 700)));
  switch (r.int(0, 5)) {
    case 0:
    case 1:
      return r.int(0, max);
    case 2: // straddles a cluster boundary
      return near(r.int(1, Math.max(1, Math.floor(st.size / st.cluster) - 1)) * st.cluster);
    case 3: // straddles an L2 table boundary (where the image has one)
      return st.size > st.l2Span ? near(r.int(1, Math.floor((st.size - 1) / st.l2Span)) * st.l2Span) : r.int(0, max);
    case 4: // at the very end
      return max;
    default: // cluster aligned
      return Math.min(max, r.int(0, Math.floor(st.size / st.cluster)) * st.cluster);
  }
}

function pickLength(r: Prng, st: GenState): number {
  let len: number;
  switch (r.int(0, 4)) {
    case 0:
      len = r.int(1, 700);
      break;
    case 1:
      len = st.cluster * r.int(1, 4);
      break;
    case 2:
      len = r.int(1, st.cluster * 3);
      break;
    case 3:
      len = r.int(1, Math.min(st.size, 400 * 1024));
      break;
    default:
      len = r.int(1, Math.min(st.size, st.l2Span + st.cluster * 2));
  }
  return Math.max(1, Math.min(len, st.size));
}

function genIo(r: Prng, st: GenState, allowDiscard: boolean): IoOp {
  const len = pickLength(r, st);
  const off = pickOffset(r, st, len);
  const x = r.next();
  if (x < 0.55) return { k: 'write', off, len, tag: st.nextTag++ };
  if (x < 0.65) return { k: 'zerodata', off, len };
  if (x < 0.82 || !allowDiscard) return { k: 'wz', off, len };
  return { k: 'discard', off, len };
}

/** The next operation for the image's current state. */
export function genOp(r: Prng, st: GenState): Op {
  const x = r.next();
  if (st.snapshots && x < 0.16) {
    if (st.names.length === 0 || (st.names.length < 4 && r.chance(0.5))) return { k: 'snap-c', name: `sn${st.nextName++}` };
    return r.chance(0.55) ? { k: 'snap-a', name: r.pick(st.names) } : { k: 'snap-d', name: r.pick(st.names) };
  }
  if (x < 0.22 && st.size < st.maxSize && !(st.v2 && st.names.length > 0)) {
    const by = r.chance(0.5) ? st.cluster * r.int(1, 40) : 512 * r.int(1, 2000);
    return { k: 'grow', by: Math.min(by, st.maxSize - st.size) };
  }
  if (x < 0.36) {
    const ops: IoOp[] = [];
    const n = r.int(2, 6);
    for (let i = 0; i < n; i++) ops.push(genIo(r, st, true));
    return { k: 'batch', ops };
  }
  return genIo(r, st, true);
}

/** Updates the generator's view after an operation both sides carried out. */
export function noteDone(st: GenState, op: Op): void {
  if (op.k === 'snap-c') st.names.push(op.name);
  if (op.k === 'snap-d') st.names = st.names.filter((n) => n !== op.name);
}

export interface Outcome {
  ok: boolean;
  message: string;
}

let fileNo = 0;

/** qemu-io commands for I/O ops (pattern files written next to the image). */
export function qemuIoCommands(ops: IoOp[], dataFile: (name: string) => string): string[] {
  return ops.map((op) => {
    switch (op.k) {
      case 'write': {
        const f = dataFile(`q-pat${fileNo++}.bin`);
        writeFileSync(f, pattern(op.len, op.tag));
        return `write -q -s ${f} ${op.off} ${op.len}`;
      }
      case 'zerodata':
        return `write -q -P 0 ${op.off} ${op.len}`;
      case 'wz':
        return `write -q -z ${op.off} ${op.len}`;
      case 'discard':
        return `discard -q ${op.off} ${op.len}`;
    }
  });
}

/** Carries out `op` on qemu's copy. */
export function runTheirs(image: string, op: Op, dataFile: (name: string) => string): Outcome {
  const res = (r: { status: number; stdout: string; stderr: string }): Outcome => ({
    ok: r.status === 0 && !/error|failed/i.test(r.stdout + r.stderr),
    message: `${r.stdout}${r.stderr}`.trim(),
  });
  switch (op.k) {
    case 'snap-c':
    case 'snap-a':
    case 'snap-d':
      return res(run('qemu-img', ['snapshot', `-${op.k[5]}`, op.name, image]));
    case 'grow':
      return res(run('qemu-img', ['resize', '-q', '-f', 'qcow2', image, `+${op.by}`]));
    default: {
      const ops = op.k === 'batch' ? op.ops : [op];
      const cmds = qemuIoCommands(ops, dataFile);
      return res(run('qemu-io', ['-f', 'qcow2', ...cmds.flatMap((c) => ['-c', c]), image]));
    }
  }
}

async function ioOnDevice(dev: Awaited<ReturnType<typeof openImage>>, op: IoOp): Promise<void> {
  switch (op.k) {
    case 'write':
      return dev.write(op.off, pattern(op.len, op.tag));
    case 'zerodata':
      return dev.write(op.off, Buffer.alloc(op.len));
    case 'wz':
      return dev.writeZeroes(op.off, op.len);
    case 'discard':
      if (!dev.discard) throw new Error('the qcow2 device has no discard');
      return dev.discard(op.off, op.len);
  }
}

/**
 * Carries out `op` on our copy: snapshots, resize, discard and some writes through the CLI, zero writes
 * through the library (the CLI has no command for them), a batch as several I/Os in flight on one open
 * device (Promise.all), which is what the pipelined write path must keep in order.
 */
export async function runOurs(image: string, op: Op, useCli: boolean, dataFile: (name: string) => string): Promise<Outcome> {
  const res = (r: { status: number; stdout: string; stderr: string }): Outcome => ({ ok: r.status === 0, message: `${r.stdout}${r.stderr}`.trim() });
  switch (op.k) {
    case 'snap-c':
    case 'snap-a':
    case 'snap-d':
      return res(dw(['snapshot', `-${op.k[5]}`, op.name, image]));
    case 'grow':
      return res(dw(['resize', '-f', 'qcow2', image, `+${op.by}`]));
    case 'discard':
      if (useCli) return res(dw(['discard', '-q', '-f', 'qcow2', image, String(op.off), String(op.len)]));
      break;
    case 'write':
    case 'zerodata':
      if (useCli) {
        const f = dataFile(`o-pat${fileNo++}.bin`);
        writeFileSync(f, op.k === 'write' ? pattern(op.len, op.tag) : Buffer.alloc(op.len));
        return res(dw(['write', '-f', 'qcow2', image, String(op.off), f]));
      }
      break;
    default:
      break;
  }
  try {
    const dev = await openImage(image, { format: 'qcow2', readOnly: false });
    try {
      if (op.k === 'batch') await Promise.all(op.ops.map((o) => ioOnDevice(dev, o)));
      else await ioOnDevice(dev, op as IoOp);
    } finally {
      await dev.close();
    }
    return { ok: true, message: '' };
  } catch (err) {
    return { ok: false, message: err instanceof Error ? `${err.message}\n${err.stack ?? ''}` : String(err) };
  }
}

/**
 * Names the step that hangs. A loop in the driver that never yields to timers (only awaiting resolved
 * promises) starves the event loop, so node:test's own timeout never fires and the run just stalls; a
 * worker thread keeps its own clock, writes the replay text straight to fd 2 and ends the process.
 */
export class Watchdog {
  private readonly worker: Worker;
  constructor(private readonly stepMs: number) {
    this.worker = new Worker(
      `const { parentPort } = require('node:worker_threads');
       const { writeSync } = require('node:fs');
       let armed;
       parentPort.on('message', (m) => { armed = m; });
       setInterval(() => {
         if (armed && Date.now() > armed.deadline) {
           writeSync(2, '\\nqcow2 differential: a step ran for over ' + armed.ms + ' ms (hang)\\n' + armed.text + '\\n');
           process.kill(process.pid, 'SIGKILL');
         }
       }, 250);`,
      { eval: true },
    );
    this.worker.unref();
  }
  arm(text: string): void {
    this.worker.postMessage({ deadline: Date.now() + this.stepMs, ms: this.stepMs, text });
  }
  disarm(): void {
    this.worker.postMessage(undefined);
  }
  stop(): Promise<number> {
    return this.worker.terminate();
  }
}
