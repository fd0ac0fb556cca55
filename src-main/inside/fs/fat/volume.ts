/**
 * A FAT12/16/32 file system opened read-only: the first FAT read once, cluster chains followed with a length
 * limit (a loop ends in a plain error), directories with their long (VFAT) names, the label from the root
 * directory as blkid takes it, used space and free ranges from the FAT itself.
 */
import { DiskError } from '../../../block/errors';
import type { Window } from '../../source';
import type { ByteRange, FileEntry, FileSystemInfo } from '../../types';
import { mergeRanges, notADir, notFound, pathParts, type FileData, type FileRun, type FileSystemReader } from '../reader';
import { fatUuid, parseFatBoot, type FatGeometry } from './boot';

const ATTR_VOLUME = 0x08;
const ATTR_DIR = 0x10;
const ATTR_LFN = 0x0f;

interface DirEntry {
  name: string;
  attr: number;
  cluster: number;
  size: number;
  mtime: number;
}

/** A FAT date and time (local time, taken as UTC: FAT records no zone) in milliseconds since 1970. */
function fatTime(date: number, time: number): number {
  if (date === 0) return 0;
  return Date.UTC(1980 + (date >> 9), ((date >> 5) & 15) - 1, date & 31, time >> 11, (time >> 5) & 63, (time & 31) * 2);
}

function shortName(e: Uint8Array): string {
  const raw = Array.from(e.subarray(0, 11));
  if (raw[0] === 0x05) raw[0] = 0xe5;
  const text = new TextDecoder('latin1').decode(Uint8Array.from(raw));
  let base = text.slice(0, 8).replace(/ +$/, '');
  let ext = text.slice(8).replace(/ +$/, '');
  // Windows NT's case bits: a name stored upper-case but shown lower-case.
  if (e[12] & 0x08) base = base.toLowerCase();
  if (e[12] & 0x10) ext = ext.toLowerCase();
  return ext ? `${base}.${ext}` : base;
}

function lfnChecksum(e: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < 11; i++) sum = (((sum & 1) << 7) | (sum >> 1)) + e[i] & 0xff;
  return sum;
}

export class FatReader implements FileSystemReader {
  info!: FileSystemInfo;
  private constructor(
    private readonly win: Window,
    private readonly g: FatGeometry,
    private readonly fat: Uint8Array,
  ) {}

  static async open(win: Window): Promise<FatReader> {
    const g = parseFatBoot(await win.bytes(0, 512), win.size);
    if (!g) throw new DiskError('EINVAL', 'not a FAT file system');
    const fatBytes = Math.ceil(((g.clusterCount + 2) * g.bits) / 8);
    if (fatBytes > g.fatSectors * g.bytesPerSector) throw new DiskError('ECORRUPT', 'FAT: the table is too small for the clusters the boot sector declares');
    const r = new FatReader(win, g, await win.bytes(g.fatStart, fatBytes));
    let used = 0;
    for (let c = 2; c < g.clusterCount + 2; c++) if (r.next(c) !== 0) used++;
    const label = await r.volumeLabel();
    r.info = {
      type: 'vfat',
      version: `FAT${g.bits}`,
      ...(label ? { label } : {}),
      ...(g.volumeId ? { uuid: fatUuid(g.volumeId) } : {}),
      size: g.totalSectors * g.bytesPerSector,
      blockSize: g.clusterSize,
      used: used * g.clusterSize,
      flags: [],
      browsable: true,
    };
    return r;
  }

  /** The FAT entry of cluster c. */
  private next(c: number): number {
    const { bits } = this.g;
    const f = this.fat;
    if (bits === 16) return f[c * 2] | (f[c * 2 + 1] << 8);
    if (bits === 32) return (f[c * 4] | (f[c * 4 + 1] << 8) | (f[c * 4 + 2] << 16) | (f[c * 4 + 3] << 24)) & 0x0fffffff;
    const at = (c * 3) >> 1;
    const pair = f[at] | (f[at + 1] << 8);
    return c & 1 ? pair >> 4 : pair & 0xfff;
  }

  private isEnd(v: number): boolean {
    const { bits } = this.g;
    return v >= (bits === 12 ? 0xff8 : bits === 16 ? 0xfff8 : 0x0ffffff8);
  }

  /** The clusters of a chain; a loop, a free or bad link or a chain longer than the volume is damage. */
  private chain(first: number, what: string): number[] {
    const out: number[] = [];
    let c = first;
    while (true) {
      if (c < 2 || c >= this.g.clusterCount + 2) throw new DiskError('ECORRUPT', `FAT: ${what} links to cluster ${c}, outside the volume`);
      if (out.length > this.g.clusterCount) throw new DiskError('ECORRUPT', `FAT: ${what}'s cluster chain loops`);
      out.push(c);
      const n = this.next(c);
      if (this.isEnd(n)) return out;
      c = n;
    }
  }

  private clusterOffset(c: number): number {
    return this.g.dataStart + (c - 2) * this.g.clusterSize;
  }

  private async dirBytes(cluster: number): Promise<Uint8Array> {
    const { g } = this;
    if (cluster === 0) {
      if (g.bits === 32) return this.dirBytes(g.rootCluster);
      return this.win.bytes(g.rootDirStart, g.rootEntries * 32);
    }
    const chain = this.chain(cluster, 'a folder');
    const out = new Uint8Array(chain.length * g.clusterSize);
    for (const [i, c] of chain.entries()) out.set(await this.win.bytes(this.clusterOffset(c), g.clusterSize), i * g.clusterSize);
    return out;
  }

  private async readDir(cluster: number): Promise<{ entries: DirEntry[]; label?: string }> {
    const data = await this.dirBytes(cluster);
    const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const entries: DirEntry[] = [];
    let label: string | undefined;
    let lfn: string[] = [];
    let lfnSum = -1;
    for (let at = 0; at + 32 <= data.length; at += 32) {
      const e = data.subarray(at, at + 32);
      if (e[0] === 0) break;
      if (e[0] === 0xe5) {
        lfn = [];
        continue;
      }
      const attr = e[11];
      if ((attr & 0x3f) === ATTR_LFN) {
        if (e[0] & 0x40) lfn = [];
        const part = new Uint16Array(13);
        const cv = (o: number) => v.getUint16(at + o, true);
        [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30].forEach((o, i) => (part[i] = cv(o)));
        let s = '';
        for (const ch of part) {
          if (ch === 0 || ch === 0xffff) break;
          s += String.fromCharCode(ch);
        }
        lfn.unshift(s);
        lfnSum = e[13];
        continue;
      }
      if (attr & ATTR_VOLUME) {
        if (!(attr & ATTR_DIR)) label ??= new TextDecoder('latin1').decode(e.subarray(0, 11)).replace(/ +$/, '');
        lfn = [];
        continue;
      }
      const name = lfn.length && lfnSum === lfnChecksum(e) ? lfn.join('') : shortName(e);
      lfn = [];
      if (name === '.' || name === '..') continue;
      const cl = (v.getUint16(at + 20, true) << 16) | v.getUint16(at + 26, true);
      entries.push({ name, attr, cluster: this.g.bits === 32 ? cl >>> 0 : cl & 0xffff, size: v.getUint32(at + 28, true), mtime: fatTime(v.getUint16(at + 24, true), v.getUint16(at + 22, true)) });
    }
    return { entries, label };
  }

  private async volumeLabel(): Promise<string | undefined> {
    const { label } = await this.readDir(0);
    if (label) return label;
    const boot = this.g.bootLabel.replace(/ +$/, '');
    return boot && boot !== 'NO NAME' ? boot : undefined;
  }

  private async resolve(path: string): Promise<DirEntry> {
    let node: DirEntry = { name: '/', attr: ATTR_DIR, cluster: 0, size: 0, mtime: 0 };
    const parts = pathParts(path);
    for (const [i, name] of parts.entries()) {
      if (!(node.attr & ATTR_DIR)) throw notADir('/' + parts.slice(0, i).join('/'));
      const { entries } = await this.readDir(node.cluster);
      // FAT names compare without regard to case, as Windows does.
      const hit = entries.find((e) => e.name === name) ?? entries.find((e) => e.name.toLowerCase() === name.toLowerCase());
      if (!hit) throw notFound(path);
      node = hit;
    }
    return node;
  }

  private toEntry(e: DirEntry): FileEntry {
    return { name: e.name, type: e.attr & ATTR_DIR ? 'dir' : 'file', size: e.attr & ATTR_DIR ? 0 : e.size, ...(e.mtime ? { mtime: e.mtime } : {}) };
  }

  async stat(path: string): Promise<FileEntry> {
    return this.toEntry(await this.resolve(path));
  }

  async list(path: string): Promise<FileEntry[]> {
    const dir = await this.resolve(path);
    if (!(dir.attr & ATTR_DIR)) throw notADir(path);
    return (await this.readDir(dir.cluster)).entries.map((e) => this.toEntry(e));
  }

  async runs(path: string): Promise<FileData> {
    const e = await this.resolve(path);
    if (e.attr & ATTR_DIR) throw new DiskError('EINVAL', `${path}: not a regular file`);
    if (e.size === 0) return { size: 0, runs: [] };
    const chain = this.chain(e.cluster, path);
    const cs = this.g.clusterSize;
    if (chain.length * cs < e.size) throw new DiskError('ECORRUPT', `FAT: ${path}'s cluster chain is shorter than its size`);
    const runs: FileRun[] = [];
    for (const [i, c] of chain.entries()) {
      const fileOffset = i * cs;
      if (fileOffset >= e.size) break;
      const length = Math.min(cs, e.size - fileOffset);
      const last = runs[runs.length - 1];
      const disk = this.clusterOffset(c);
      if (last && last.diskOffset! + last.length === disk) last.length += length;
      else runs.push({ fileOffset, length, diskOffset: disk });
    }
    return { size: e.size, runs };
  }

  async freeRanges(): Promise<ByteRange[]> {
    const out: ByteRange[] = [];
    const cs = this.g.clusterSize;
    for (let c = 2; c < this.g.clusterCount + 2; c++) {
      if (this.next(c) === 0) out.push({ start: this.clusterOffset(c), length: cs });
    }
    return mergeRanges(out);
  }
}
