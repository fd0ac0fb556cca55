/**
 * An NTFS volume opened read-only: the MFT located from record 0's own runlist, records with their attribute
 * lists merged, directories from $INDEX_ROOT and the $INDEX_ALLOCATION B-tree (walked from the root, each block
 * once), the label from $Volume, used space and free ranges from $Bitmap. Compressed and encrypted files are
 * refused by name; sparse runs and the part past the initialised size read as zeros.
 */
import { DiskError } from '../../../block/errors';
import { MAX_READ, type Window } from '../../source';
import type { ByteRange, FileEntry, FileSystemInfo } from '../../types';
import { countSet, freeFromBitmap, mergeRanges, notADir, notFound, pathParts, type FileData, type FileRun, type FileSystemReader } from '../reader';
import {
  ATTR_ATTRIBUTE_LIST, ATTR_DATA, ATTR_INDEX_ALLOCATION, ATTR_INDEX_ROOT, ATTR_VOLUME_NAME, FLAG_COMPRESSED, FLAG_ENCRYPTED,
  applyFixups, ntfsTime, parseFileName, parseNtfsBoot, parseRecord, type Attribute, type MftRecord, type NtfsBoot, type Run,
} from './mft';

const ROOT = 5;
const MAX_INDEX_BLOCKS = 1 << 16;

interface Node {
  ref: number;
  name: string;
  isDir: boolean;
  size: number;
  mtime: number;
}

export class NtfsReader implements FileSystemReader {
  info!: FileSystemInfo;
  private mftRuns: Run[] = [];
  private bitmap!: Uint8Array;
  private readonly clusters: number;

  private constructor(
    private readonly win: Window,
    private readonly boot: NtfsBoot,
  ) {
    this.clusters = Math.floor((boot.totalSectors * boot.bytesPerSector) / boot.clusterSize);
  }

  static async open(win: Window): Promise<NtfsReader> {
    const boot = parseNtfsBoot(await win.bytes(0, 512));
    if (!boot) throw new DiskError('EINVAL', 'not an NTFS file system');
    // The boot sector counts the volume's sectors, the backup boot sector (its last) left out.
    if (boot.totalSectors * boot.bytesPerSector > win.size) throw new DiskError('ECORRUPT', `NTFS: the boot sector claims ${boot.totalSectors * boot.bytesPerSector} bytes but the volume holds ${win.size}`);
    const r = new NtfsReader(win, boot);
    const rec0 = await win.bytes(boot.mftLcn * boot.clusterSize, boot.recordSize);
    if (!applyFixups(rec0, boot.bytesPerSector)) throw new DiskError('ECORRUPT', 'NTFS: the $MFT record is damaged (its fixups do not match)');
    const mftData = parseRecord(rec0, '$MFT').attrs.find((a) => a.type === ATTR_DATA && a.name === '' && a.nonResident);
    if (!mftData?.runs) throw new DiskError('ECORRUPT', 'NTFS: the $MFT has no data runs');
    r.mftRuns = mftData.runs;
    // Record 0 may continue its runlist in extension records (a fragmented MFT): merge them now.
    const full = await r.record(0);
    r.mftRuns = dataRuns(full.attrs) ?? r.mftRuns;
    const volume = await r.record(3);
    const nameAttr = volume.attrs.find((a) => a.type === ATTR_VOLUME_NAME);
    const label = nameAttr?.value ? new TextDecoder('utf-16le').decode(nameAttr.value) : '';
    const bm = (await r.record(6)).attrs.find((a) => a.type === ATTR_DATA && a.name === '');
    if (!bm) throw new DiskError('ECORRUPT', 'NTFS: $Bitmap has no data');
    r.bitmap = await r.attrBytes(bm, 0, Math.ceil(r.clusters / 8));
    const used = countSet(r.bitmap, r.clusters) * boot.clusterSize;
    r.info = {
      type: 'ntfs',
      ...(label ? { label } : {}),
      uuid: boot.serial.toString(16).toUpperCase().padStart(16, '0'),
      size: boot.totalSectors * boot.bytesPerSector,
      blockSize: boot.clusterSize,
      used,
      flags: [],
      browsable: true,
    };
    return r;
  }

  /** Reads [offset, offset + length) of a (resident or non-resident) attribute's value; unmapped runs read as zeros. */
  private async attrBytes(a: Attribute, offset: number, length: number, runs = a.runs): Promise<Uint8Array> {
    if (!a.nonResident) return a.value!.slice(offset, offset + length);
    return this.runBytes(runs ?? [], offset, length);
  }

  private async runBytes(runs: Run[], offset: number, length: number): Promise<Uint8Array> {
    if (length > MAX_READ) throw new DiskError('ECORRUPT', `NTFS: a structure of ${length} bytes is impossibly large`);
    const cs = this.boot.clusterSize;
    const out = new Uint8Array(length);
    for (const r of runs) {
      const rs = r.vcn * cs;
      const re = rs + r.length * cs;
      const s = Math.max(rs, offset);
      const e = Math.min(re, offset + length);
      if (e <= s || r.lcn === null) continue;
      out.set(await this.win.bytes(r.lcn * cs + (s - rs), e - s), s - offset);
    }
    return out;
  }

  /** MFT record n with its extension records' attributes merged in (through $ATTRIBUTE_LIST). */
  async record(n: number, merge = true): Promise<MftRecord> {
    const size = this.boot.recordSize;
    const raw = await this.runBytes(this.mftRuns, n * size, size);
    if (!applyFixups(raw, this.boot.bytesPerSector)) throw new DiskError('ECORRUPT', `NTFS: MFT record ${n} is damaged (its fixups do not match)`);
    const rec = parseRecord(raw, `MFT record ${n}`);
    const list = rec.attrs.find((a) => a.type === ATTR_ATTRIBUTE_LIST);
    if (!merge || !list) return rec;
    const listLen = list.nonResident ? list.dataSize! : list.value!.length;
    if (listLen > 1 << 20) throw new DiskError('ECORRUPT', `NTFS: MFT record ${n}'s attribute list is absurdly large`);
    const b = await this.attrBytes(list, 0, listLen);
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const refs = new Set<number>();
    for (let at = 0; at + 26 <= b.length; ) {
      const len = v.getUint16(at + 4, true);
      if (len < 26) break;
      const ref = Number(v.getBigUint64(at + 16, true) & 0xffffffffffffn);
      if (ref !== n) refs.add(ref);
      at += len;
    }
    for (const ref of refs) {
      const ext = await this.record(ref, false);
      if (ext.baseRef === n) rec.attrs.push(...ext.attrs);
    }
    return rec;
  }

  private async indexEntries(ref: number): Promise<Node[]> {
    const rec = await this.record(ref);
    const root = rec.attrs.find((a) => a.type === ATTR_INDEX_ROOT && a.name === '$I30');
    if (!root?.value) throw new DiskError('EINVAL', `NTFS: record ${ref} is not a folder`);
    const alloc = rec.attrs.filter((a) => a.type === ATTR_INDEX_ALLOCATION && a.name === '$I30');
    const allocRuns = alloc.flatMap((a) => a.runs ?? []).sort((x, y) => x.vcn - y.vcn);
    const ibs = this.boot.indexBlockSize;
    const vcnUnit = ibs >= this.boot.clusterSize ? this.boot.clusterSize : 512;
    const nodes = new Map<string, Node>();
    const seen = new Set<number>();
    const walk = async (buf: Uint8Array, headerAt: number) => {
      const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
      let at = headerAt + v.getUint32(headerAt, true);
      const end = Math.min(buf.length, headerAt + v.getUint32(headerAt + 4, true));
      while (at + 16 <= end) {
        const len = v.getUint16(at + 8, true);
        const keyLen = v.getUint16(at + 10, true);
        const flags = v.getUint16(at + 12, true);
        if (len < 16 || at + len > buf.length) throw new DiskError('ECORRUPT', `NTFS: a malformed index entry in folder record ${ref}`);
        if (flags & 1) {
          const vcn = Number(BigInt.asUintN(53, v.getBigUint64(at + len - 8, true)));
          if (!seen.has(vcn)) {
            seen.add(vcn);
            if (seen.size > MAX_INDEX_BLOCKS) throw new DiskError('ECORRUPT', `NTFS: folder record ${ref} has an absurd index`);
            const block = await this.runBytes(allocRuns, vcn * vcnUnit, ibs);
            if (new TextDecoder('latin1').decode(block.subarray(0, 4)) !== 'INDX' || !applyFixups(block, this.boot.bytesPerSector)) {
              throw new DiskError('ECORRUPT', `NTFS: folder record ${ref} has a damaged index block`);
            }
            await walk(block, 24);
          }
        }
        if (flags & 2) break;
        const fn = parseFileName(buf.subarray(at + 16, at + 16 + keyLen));
        const child = Number(v.getBigUint64(at, true) & 0xffffffffffffn);
        // DOS 8.3 aliases (namespace 2) repeat a long name; system files (records below 16) are hidden as ntfs-3g hides them.
        if (fn && fn.namespace !== 2 && child >= 16 && !nodes.has(fn.name)) nodes.set(fn.name, { ref: child, name: fn.name, isDir: fn.isDir, size: fn.size, mtime: fn.mtime });
        at += len;
      }
    };
    await walk(root.value, 16);
    return [...nodes.values()];
  }

  private async resolve(path: string): Promise<Node> {
    let node: Node = { ref: ROOT, name: '/', isDir: true, size: 0, mtime: 0 };
    const parts = pathParts(path);
    for (const [i, name] of parts.entries()) {
      if (!node.isDir) throw notADir('/' + parts.slice(0, i).join('/'));
      const hit = (await this.indexEntries(node.ref)).find((e) => e.name === name);
      if (!hit) throw notFound(path);
      node = hit;
    }
    return node;
  }

  /** The entry as the file's own record says (an index key's size and time can be stale). */
  private async entry(node: Node): Promise<FileEntry> {
    const rec = await this.record(node.ref);
    const si = rec.attrs.find((a) => a.type === 0x10)?.value;
    const mtime = si && si.length >= 16 ? ntfsTime(new DataView(si.buffer, si.byteOffset, si.byteLength).getBigUint64(8, true)) : node.mtime;
    const isDir = rec.isDir;
    const data = rec.attrs.find((a) => a.type === ATTR_DATA && a.name === '' && (!a.nonResident || a.startVcn === 0));
    const size = isDir ? 0 : data ? (data.nonResident ? data.dataSize! : data.value!.length) : 0;
    const isLink = rec.attrs.some((a) => a.type === 0xc0); // a reparse point: a symlink or junction, not followed
    return { name: node.name, type: isLink ? 'symlink' : isDir ? 'dir' : 'file', size, mtime };
  }

  async stat(path: string): Promise<FileEntry> {
    return this.entry(await this.resolve(path));
  }

  async list(path: string): Promise<FileEntry[]> {
    const dir = await this.resolve(path);
    if (!dir.isDir) throw notADir(path);
    const out: FileEntry[] = [];
    for (const n of await this.indexEntries(dir.ref)) out.push(await this.entry(n));
    return out;
  }

  async runs(path: string): Promise<FileData> {
    const node = await this.resolve(path);
    const rec = await this.record(node.ref);
    if (rec.isDir) throw new DiskError('EINVAL', `${path}: not a regular file`);
    const datas = rec.attrs.filter((a) => a.type === ATTR_DATA && a.name === '');
    if (!datas.length) return { size: 0, runs: [] };
    const first = datas.find((a) => !a.nonResident || a.startVcn === 0)!;
    if (first.flags & FLAG_COMPRESSED) throw new DiskError('EUNSUPPORTED', `${path}: NTFS-compressed files are not read yet`);
    if (first.flags & FLAG_ENCRYPTED) throw new DiskError('EUNSUPPORTED', `${path}: the file is NTFS-encrypted (EFS) and cannot be read`);
    if (!first.nonResident) return { size: first.value!.length, runs: [], inline: first.value! };
    const size = first.dataSize!;
    const init = Math.min(first.initSize!, size);
    const cs = this.boot.clusterSize;
    const runs: FileRun[] = [];
    let pos = 0;
    for (const r of dataRuns(datas) ?? []) {
      const s = r.vcn * cs;
      if (s >= size) break;
      if (s !== pos) throw new DiskError('ECORRUPT', `NTFS: ${path}'s runlist has a gap or an overlap`);
      const len = Math.min(r.length * cs, size - s);
      if (r.lcn !== null && r.lcn + r.length > this.clusters) throw new DiskError('ECORRUPT', `NTFS: ${path}'s data lies past the end of the volume`);
      // Past the initialised size the file reads as zeros whatever the clusters hold.
      const real = r.lcn === null ? 0 : Math.max(0, Math.min(len, init - s));
      if (real > 0) runs.push({ fileOffset: s, length: real, diskOffset: r.lcn! * cs });
      if (real < len) runs.push({ fileOffset: s + real, length: len - real, diskOffset: null });
      pos = s + len;
    }
    if (pos < size) runs.push({ fileOffset: pos, length: size - pos, diskOffset: null });
    return { size, runs };
  }

  async freeRanges(): Promise<ByteRange[]> {
    const out: ByteRange[] = [];
    freeFromBitmap(this.bitmap, this.clusters, 0, this.boot.clusterSize, 0, out);
    return mergeRanges(out);
  }
}

/** The unnamed $DATA's runs across its pieces (an attribute list splits a long runlist over records), in VCN order. */
function dataRuns(attrs: Attribute[]): Run[] | undefined {
  const pieces = attrs.filter((a) => a.type === ATTR_DATA && a.name === '' && a.nonResident).sort((a, b) => a.startVcn! - b.startVcn!);
  if (!pieces.length) return undefined;
  return pieces.flatMap((a) => a.runs!);
}

