/**
 * Compression of many equal-sized blocks (qcow2 -c clusters, streamOptimized VMDK grains) on worker threads,
 * through memory shared with them, so that the blocks of a convert are compressed side by side on every core
 * and no buffer is made per block.
 *
 * Why not zlib.deflateRaw on the libuv thread pool: each call builds a zlib stream (~270 KiB of native
 * state at qemu's memLevel 9) and two or three output Buffers; over the 11,000 clusters of an ext4 image this
 * garbage held peak RSS at 130–150 MB (V8 collects external memory only every ~64 MB of it). Here each worker
 * keeps one zlib stream, reset between blocks, and compresses from an input slot into an output slot of one
 * SharedArrayBuffer; the caller writes the output from the slot and gives the slot back.
 *
 * The workers run a few lines of plain JavaScript given as a string, so nothing depends on where the build
 * put its files (dist/, a bundle, an Electron archive). Where a worker cannot be started, callers fall back to
 * compressBlock() compresses on the libuv thread pool instead.
 */
import type { Worker as WorkerType } from 'node:worker_threads';
import { DiskError } from './errors';

/** The worker's code: one zlib stream, reset for each block; -1 for a block zlib could not compress. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const zlib = require('node:zlib');
const { shared, slotSize, outSize, raw, options } = workerData;
const make = () => (raw ? new zlib.DeflateRaw(options) : new zlib.Deflate(options));
let stream = make();
let failed = false;
const handleOf = (s) => {
  const h = s._handle;
  if (!h || typeof h.writeSync !== 'function' || typeof h.reset !== 'function' || !(s._writeState instanceof Uint32Array)) return undefined;
  h.onerror = () => { failed = true; };
  return h;
};
let handle = handleOf(stream);
parentPort.on('message', ({ id, slot, length }) => {
  const input = new Uint8Array(shared, slot * (slotSize + outSize), length);
  const out = new Uint8Array(shared, slot * (slotSize + outSize) + slotSize, outSize);
  let produced = -1;
  try {
    if (handle) {
      failed = false;
      handle.reset();
      handle.writeSync(zlib.constants.Z_FINISH, input, 0, length, out, 0, outSize);
      const left = stream._writeState[0];
      if (failed) { stream = make(); handle = handleOf(stream); }
      else if (left > 0) produced = outSize - left;
    } else {
      const packed = raw ? zlib.deflateRawSync(input, options) : zlib.deflateSync(input, options);
      if (packed.length < outSize) { out.set(packed); produced = packed.length; }
    }
  } catch { produced = -1; }
  parentPort.postMessage({ id, produced });
});
`;

export interface Packed {
  /** The compressed bytes, in shared memory: valid until release(). */
  data: Uint8Array;
  release(): void;
}

interface Job {
  resolve: (p: Packed | undefined) => void;
  reject: (err: unknown) => void;
  slot: number;
}

/** How many blocks may be in the pool at once per worker (compressing, or compressed and not yet written). */
const SLOTS_PER_WORKER = 4;

export class DeflatePool {
  private readonly workers: WorkerType[] = [];
  private readonly shared: SharedArrayBuffer;
  private readonly freeSlots: number[] = [];
  private readonly waiting: Array<(slot: number) => void> = [];
  private readonly jobs = new Map<number, Job>();
  private readonly busy: number[] = [];
  private nextId = 0;
  private broken?: DiskError;

  /** Bytes each slot's output takes: zlib's deflateBound for a block of blockSize, with the zlib wrapper. */
  readonly outSize: number;

  /**
   * `blockSize`: the largest block compressed. The output of any block fits (deflate's worst case is a few
   * bytes per 16 KiB more than its input): whether it shrank enough to be worth storing is the caller's call.
   */
  constructor(
    readonly blockSize: number,
    raw: boolean,
    options: DeflateOptions,
    workerCount: number,
    /** Where deflatePool() keeps this pool (dropped from there when the pool breaks). */
    private readonly key = '',
  ) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Worker } = require('node:worker_threads') as typeof import('node:worker_threads');
    const slots = workerCount * SLOTS_PER_WORKER;
    const outSize = blockSize + (blockSize >> 10) + 64;
    this.outSize = outSize;
    this.shared = new SharedArrayBuffer(slots * (blockSize + outSize));
    for (let i = 0; i < slots; i++) this.freeSlots.push(i);
    for (let i = 0; i < workerCount; i++) {
      const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { shared: this.shared, slotSize: blockSize, outSize, raw, options } });
      w.on('message', (m: { id: number; produced: number }) => this.done(i, m.id, m.produced));
      w.on('error', (err) => this.fail(new DiskError('EIO', `compression worker failed: ${err.message}`)));
      w.on('exit', () => this.fail(new DiskError('EIO', 'compression worker stopped')));
      // After the listeners: adding a 'message' listener refs the worker's port again.
      w.unref();
      this.workers.push(w);
      this.busy.push(0);
    }
  }

  /** Compresses `data` (at most blockSize bytes); undefined only if zlib failed. */
  async compress(data: Uint8Array): Promise<Packed | undefined> {
    if (this.broken) throw this.broken;
    if (data.length > this.blockSize) throw new DiskError('EINVAL', `block of ${data.length} bytes is larger than the pool's ${this.blockSize}`);
    const slot = this.freeSlots.pop() ?? (await new Promise<number>((resolve) => this.waiting.push(resolve)));
    if (this.broken) {
      this.giveBack(slot);
      throw this.broken;
    }
    new Uint8Array(this.shared, slot * (this.blockSize + this.outSize), data.length).set(data);
    // The least busy worker takes it; a worker with work keeps the process alive until it answers.
    let w = 0;
    for (let i = 1; i < this.workers.length; i++) if (this.busy[i] < this.busy[w]) w = i;
    if (this.busy[w]++ === 0) this.workers[w].ref();
    const id = this.nextId++;
    return new Promise<Packed | undefined>((resolve, reject) => {
      this.jobs.set(id, { resolve, reject, slot });
      this.workers[w].postMessage({ id, slot, length: data.length });
    });
  }

  private done(worker: number, id: number, produced: number): void {
    if (--this.busy[worker] === 0) this.workers[worker].unref();
    const job = this.jobs.get(id);
    if (!job) return;
    this.jobs.delete(id);
    if (produced < 0) {
      this.giveBack(job.slot);
      job.resolve(undefined);
      return;
    }
    let released = false;
    job.resolve({
      data: new Uint8Array(this.shared, job.slot * (this.blockSize + this.outSize) + this.blockSize, produced),
      release: () => {
        if (released) return;
        released = true;
        this.giveBack(job.slot);
      },
    });
  }

  private giveBack(slot: number): void {
    const next = this.waiting.shift();
    if (next) next(slot);
    else this.freeSlots.push(slot);
  }

  private fail(err: DiskError): void {
    if (this.broken) return;
    this.broken = err;
    for (const job of this.jobs.values()) job.reject(err);
    this.jobs.clear();
    // Those waiting for a slot get one and find the pool broken.
    for (const w of this.waiting.splice(0)) w(0);
    for (const w of this.workers) void w.terminate();
    if (pools.get(this.key) === this) pools.delete(this.key);
  }
}

export interface DeflateOptions {
  level?: number;
  windowBits?: number;
  memLevel?: number;
}

const pools = new Map<string, DeflatePool>();

/**
 * The process's pool for blocks of `blockSize` with these zlib parameters, started on first use (a command
 * that never compresses starts no worker). One worker per core, at most four. Undefined where no worker can
 * be started.
 */
export function deflatePool(blockSize: number, raw: boolean, options: DeflateOptions): DeflatePool | undefined {
  const key = `${blockSize}/${raw}/${JSON.stringify(options)}`;
  let pool = pools.get(key);
  if (!pool) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const os = require('node:os') as typeof import('node:os');
      pool = new DeflatePool(blockSize, raw, options, Math.max(1, Math.min(4, os.availableParallelism())), key);
    } catch {
      return undefined;
    }
    pools.set(key, pool);
  }
  return pool;
}

/**
 * Compresses one block (raw deflate, or the zlib format) on the pool for blocks of `blockSize`; where no worker
 * can be started, on the libuv thread pool (a new zlib stream and output Buffer for the block).
 */
export async function compressBlock(data: Uint8Array, blockSize: number, raw: boolean, options: DeflateOptions): Promise<Packed> {
  const packed = await deflatePool(blockSize, raw, options)?.compress(data);
  if (packed) return packed;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const zlib = require('node:zlib') as typeof import('node:zlib');
  const opts = { ...options, chunkSize: 2 * Math.max(data.length, 1024) };
  const out = await new Promise<Buffer>((resolve, reject) => (raw ? zlib.deflateRaw : zlib.deflate)(data, opts, (err, b) => (err ? reject(err) : resolve(b))));
  return { data: out, release: () => undefined };
}
