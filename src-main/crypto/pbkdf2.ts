/**
 * PBKDF2 through node:crypto (on libuv's thread pool, so the app's main process keeps answering), and the
 * benchmark qemu uses to turn an iter-time in milliseconds into an iteration count
 * (qcrypto_pbkdf2_count_iters: CPU time, not wall time, so a busy machine does not weaken new keys).
 */
import { pbkdf2 as pbkdf2Callback, pbkdf2Sync } from 'node:crypto';
import type { HashAlg } from './algorithms';

export function pbkdf2(hash: HashAlg, secret: Uint8Array, salt: Uint8Array, iterations: number, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    pbkdf2Callback(secret, salt, iterations, length, hash, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** Measured rates, by hash and output length: qemu measures per image; one measurement per process is enough. */
const measured = new Map<string, number>();

/**
 * PBKDF2 iterations this machine computes in one CPU second for `hash` and an output of `length` bytes, as
 * qemu measures it: from 2^15 iterations, ten times more while a run takes under 100 ms, scaled while under
 * 500 ms, then extrapolated from the first run over 500 ms.
 */
export function iterationsPerSecond(hash: HashAlg, length: number): number {
  const cacheKey = `${hash}/${length}`;
  const known = measured.get(cacheKey);
  if (known) return known;
  const secret = Buffer.from('diskwright pbkdf2 benchmark');
  const salt = Buffer.alloc(32, 0x5a);
  let iterations = 1 << 15;
  let delta = 0;
  for (;;) {
    const start = cpuMs();
    pbkdf2Sync(secret, salt, iterations, length, hash).fill(0);
    delta = cpuMs() - start;
    if (delta > 500) break;
    iterations = delta < 100 ? iterations * 10 : Math.floor((iterations * 1000) / Math.max(delta, 1));
  }
  const rate = Math.floor((iterations * 1000) / delta);
  measured.set(cacheKey, rate);
  return rate;
}
