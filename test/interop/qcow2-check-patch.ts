/**
 * Corrupts real qcow2 images in known ways for the check/repair tests: finds structures through the header
 * (L1 table, L2 tables, refcount table and blocks) and patches bytes in place. Deliberately independent of
 * the code under test: its own header reads and refcount entry codec.
 */
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';

export class Qcow2Patcher {
  readonly clusterSize: number;
  readonly version: number;
  readonly l1Offset: number;
  readonly l1Size: number;
  readonly reftableOffset: number;
  readonly reftableClusters: number;
  readonly refcountBits: number;
  readonly l2EntrySize: number;

  constructor(readonly path: string) {
    const h = this.read(0, 104);
    this.version = h.readUInt32BE(4);
    this.clusterSize = 2 ** h.readUInt32BE(20);
    this.l1Size = h.readUInt32BE(36);
    this.l1Offset = Number(h.readBigUInt64BE(40));
    this.reftableOffset = Number(h.readBigUInt64BE(48));
    this.reftableClusters = h.readUInt32BE(56);
    this.refcountBits = this.version >= 3 ? 2 ** h.readUInt32BE(96) : 16;
    const extL2 = this.version >= 3 && (h.readBigUInt64BE(72) & 16n) !== 0n;
    this.l2EntrySize = extL2 ? 16 : 8;
  }

  get fileSize(): number {
    const fd = openSync(this.path, 'r');
    try {
      return fstatSync(fd).size;
    } finally {
      closeSync(fd);
    }
  }

  read(pos: number, length: number): Buffer {
    const buf = Buffer.alloc(length);
    const fd = openSync(this.path, 'r');
    try {
      readSync(fd, buf, 0, length, pos);
    } finally {
      closeSync(fd);
    }
    return buf;
  }

  write(pos: number, data: Buffer): void {
    const fd = openSync(this.path, 'r+');
    try {
      writeSync(fd, data, 0, data.length, pos);
    } finally {
      closeSync(fd);
    }
  }

  u64(pos: number): bigint {
    return this.read(pos, 8).readBigUInt64BE(0);
  }

  setU64(pos: number, v: bigint): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(v);
    this.write(pos, b);
  }

  l1Entry(i: number): bigint {
    return this.u64(this.l1Offset + 8 * i);
  }

  setL1Entry(i: number, v: bigint): void {
    this.setU64(this.l1Offset + 8 * i, v);
  }

  /** Host offset of the L2 table that L1 entry `i` points to. */
  l2Offset(i: number): number {
    return Number(this.l1Entry(i) & 0x00fffffffffffe00n);
  }

  l2Entry(l1Index: number, j: number): bigint {
    return this.u64(this.l2Offset(l1Index) + this.l2EntrySize * j);
  }

  setL2Entry(l1Index: number, j: number, v: bigint): void {
    this.setU64(this.l2Offset(l1Index) + this.l2EntrySize * j, v);
  }

  /** Host offsets of the data clusters the active L1 maps (standard, non-compressed entries), in guest order. */
  dataClusters(): Array<{ l1Index: number; l2Index: number; offset: number }> {
    const out: Array<{ l1Index: number; l2Index: number; offset: number }> = [];
    for (let i = 0; i < this.l1Size; i++) {
      if (this.l2Offset(i) === 0) continue;
      const table = this.read(this.l2Offset(i), this.clusterSize);
      for (let j = 0; j < this.clusterSize / this.l2EntrySize; j++) {
        const e = table.readBigUInt64BE(j * this.l2EntrySize);
        const off = Number(e & 0x00fffffffffffe00n);
        if ((e & (1n << 62n)) === 0n && off !== 0) out.push({ l1Index: i, l2Index: j, offset: off });
      }
    }
    return out;
  }

  private refcountSlot(cluster: number): { block: number; index: number } {
    const perBlock = (this.clusterSize * 8) / this.refcountBits;
    const block = Number(this.u64(this.reftableOffset + 8 * Math.floor(cluster / perBlock)) & ~0x1ffn);
    if (block === 0) throw new Error(`cluster ${cluster} has no refcount block`);
    return { block, index: cluster % perBlock };
  }

  refcount(cluster: number): number {
    const { block, index } = this.refcountSlot(cluster);
    const bits = this.refcountBits;
    if (bits >= 8) {
      const bytes = this.read(block + (index * bits) / 8, bits / 8);
      return Number(bytes.reduce((v, b) => v * 256n + BigInt(b), 0n));
    }
    const perByte = 8 / bits;
    const byte = this.read(block + Math.floor(index / perByte), 1)[0];
    return (byte >> ((index % perByte) * bits)) & ((1 << bits) - 1);
  }

  setRefcount(cluster: number, value: number): void {
    const { block, index } = this.refcountSlot(cluster);
    const bits = this.refcountBits;
    if (bits >= 8) {
      const bytes = Buffer.alloc(bits / 8);
      let v = BigInt(value);
      for (let i = bytes.length - 1; i >= 0; i--) {
        bytes[i] = Number(v & 0xffn);
        v >>= 8n;
      }
      this.write(block + (index * bits) / 8, bytes);
      return;
    }
    const perByte = 8 / bits;
    const at = block + Math.floor(index / perByte);
    const shift = (index % perByte) * bits;
    const mask = ((1 << bits) - 1) << shift;
    const old = this.read(at, 1)[0];
    this.write(at, Buffer.from([(old & ~mask) | ((value << shift) & mask)]));
  }

  incompatibleFeatures(): bigint {
    return this.u64(72);
  }

  setIncompatibleFeatures(v: bigint): void {
    this.setU64(72, v);
  }

  /** Appends a cluster of `fill` bytes at the (cluster-aligned) end of the file; returns its cluster index. */
  appendCluster(fill: number): number {
    const index = Math.ceil(this.fileSize / this.clusterSize);
    this.write(index * this.clusterSize, Buffer.alloc(this.clusterSize, fill));
    return index;
  }
}
