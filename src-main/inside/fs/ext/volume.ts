/**
 * An ext2/3/4 file system opened read-only: paths resolved through directories (htree directories are read as
 * the plain lists they also are), files as runs, symlinks shown and never followed.
 */
import { DiskError } from '../../../block/errors';
import type { Window } from '../../source';
import type { ByteRange, FileEntry, FileSystemInfo } from '../../types';
import { notADir, notFound, pathParts, type FileData, type FileSystemReader } from '../reader';
import { ExtGroups } from './groups';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, inlineData, inodeRuns, isInline, parseInode, type Inode } from './inode';
import { extInfo, parseSuperblock, type Superblock } from './superblock';

const ROOT_INO = 2;
/** A directory larger than this is damage, not a directory: its listing would not fit in memory anyway. */
const MAX_DIR_BYTES = 256 << 20;

export class ExtReader implements FileSystemReader {
  readonly info: FileSystemInfo;
  private constructor(
    private readonly win: Window,
    private readonly sb: Superblock,
    private readonly groups: ExtGroups,
  ) {
    this.info = extInfo(sb);
  }

  static async open(win: Window): Promise<ExtReader> {
    const raw = await win.bytes(1024, 1024);
    const sb = parseSuperblock(raw, win.size);
    if (sb === undefined) throw new DiskError('EINVAL', 'not an ext2/3/4 file system');
    if (typeof sb === 'string') throw new DiskError('ECORRUPT', `ext superblock: ${sb}`);
    return new ExtReader(win, sb, await ExtGroups.read(win, sb, raw));
  }

  async inode(ino: number): Promise<Inode> {
    const { sb } = this;
    if (ino < 1 || ino > sb.inodesCount) throw new DiskError('ECORRUPT', `ext: inode number ${ino} is out of range`);
    const g = Math.floor((ino - 1) / sb.inodesPerGroup);
    const index = (ino - 1) % sb.inodesPerGroup;
    const table = this.groups.descs[g]?.inodeTable;
    if (table === undefined) throw new DiskError('ECORRUPT', `ext: inode ${ino} lies in a group that does not exist`);
    return parseInode(ino, await this.win.bytes(table * sb.blockSize + index * sb.inodeSize, sb.inodeSize));
  }

  private async fileBytes(inode: Inode): Promise<Uint8Array> {
    if (isInline(inode)) return inlineData(inode, this.sb.inodeSize);
    if (inode.size > Math.min(MAX_DIR_BYTES, this.win.size)) throw new DiskError('ECORRUPT', `ext inode ${inode.ino}: ${inode.size} bytes is too large for a directory or link`);
    const out = new Uint8Array(inode.size);
    for (const r of await inodeRuns(this.win, this.sb, inode)) {
      if (r.diskOffset !== null) out.set(await this.win.bytes(r.diskOffset, r.length), r.fileOffset);
    }
    return out;
  }

  /** A directory's entries (name → inode, type byte), "." and ".." left out. */
  private async entries(dir: Inode): Promise<Array<{ name: string; ino: number }>> {
    const data = await this.fileBytes(dir);
    const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const out: Array<{ name: string; ino: number }> = [];
    // An inline directory starts with its parent's inode number (4 bytes), then ordinary entries.
    let at = isInline(dir) ? 4 : 0;
    const decoder = new TextDecoder('utf-8');
    while (at + 8 <= data.length) {
      const ino = v.getUint32(at, true);
      const recLen = v.getUint16(at + 4, true);
      const nameLen = data[at + 6];
      if (recLen < 8 || at + recLen > data.length) {
        // Inline data ends in zeros where no entry lies; anything else is damage, but the entries so far stand.
        break;
      }
      if (ino !== 0 && nameLen > 0 && 8 + nameLen <= recLen) {
        const name = decoder.decode(data.subarray(at + 8, at + 8 + nameLen));
        if (name !== '.' && name !== '..') out.push({ name, ino });
      }
      at += recLen;
    }
    return out;
  }

  private async resolve(path: string): Promise<Inode> {
    let node = await this.inode(ROOT_INO);
    const parts = pathParts(path);
    for (const [i, name] of parts.entries()) {
      if ((node.mode & S_IFMT) !== S_IFDIR) throw notADir('/' + parts.slice(0, i).join('/'));
      const hit = (await this.entries(node)).find((e) => e.name === name);
      if (!hit) throw notFound(path);
      node = await this.inode(hit.ino);
    }
    return node;
  }

  private async entry(name: string, inode: Inode): Promise<FileEntry> {
    const fmt = inode.mode & S_IFMT;
    const type = fmt === S_IFDIR ? 'dir' : fmt === S_IFREG ? 'file' : fmt === S_IFLNK ? 'symlink' : 'other';
    const e: FileEntry = { name, type, size: inode.size, mtime: inode.mtime, mode: inode.mode & 0o7777 };
    if (type === 'symlink') e.target = await this.linkTarget(inode);
    return e;
  }

  private async linkTarget(inode: Inode): Promise<string> {
    // A fast symlink keeps its target in i_block (no data blocks, no extents, no inline flag).
    const fast = inode.size < 60 && !isInline(inode) && (inode.flags & 0x80000) === 0 && inode.blocks512 === 0;
    const bytes = fast ? inode.block.subarray(0, inode.size) : await this.fileBytes(inode);
    return new TextDecoder('utf-8').decode(bytes);
  }

  async stat(path: string): Promise<FileEntry> {
    const parts = pathParts(path);
    return this.entry(parts[parts.length - 1] ?? '/', await this.resolve(path));
  }

  async list(path: string): Promise<FileEntry[]> {
    const dir = await this.resolve(path);
    if ((dir.mode & S_IFMT) !== S_IFDIR) throw notADir(path);
    const out: FileEntry[] = [];
    for (const e of await this.entries(dir)) out.push(await this.entry(e.name, await this.inode(e.ino)));
    return out;
  }

  async runs(path: string): Promise<FileData> {
    const inode = await this.resolve(path);
    if ((inode.mode & S_IFMT) !== S_IFREG) throw new DiskError('EINVAL', `${path}: not a regular file`);
    if (isInline(inode)) return { size: inode.size, runs: [], inline: inlineData(inode, this.sb.inodeSize) };
    return { size: inode.size, runs: await inodeRuns(this.win, this.sb, inode) };
  }

  freeRanges(): Promise<ByteRange[]> {
    return this.groups.freeRanges();
  }
}
