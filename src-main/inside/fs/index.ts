/**
 * Which file system a volume holds, tried in blkid's spirit (the most specific signatures first), and the
 * reader for the browsable ones (ext2/3/4, FAT, NTFS). Anything unrecognised is "unknown" with its first bytes.
 */
import { DiskError } from '../../block/errors';
import type { Window } from '../source';
import type { FileSystemInfo } from '../types';
import { probeBtrfs } from './btrfs/probe';
import { extInfo, probeExt } from './ext/superblock';
import { ExtReader } from './ext/volume';
import { probeExfat } from './exfat/probe';
import { probeFat } from './fat/boot';
import { FatReader } from './fat/volume';
import { probeIso9660 } from './iso9660/probe';
import { probeLuks } from './luks/probe';
import { probeLvm } from './lvm/probe';
import { parseNtfsBoot } from './ntfs/mft';
import { NtfsReader } from './ntfs/volume';
import type { FileSystemReader } from './reader';
import { probeSwap } from './swap/probe';
import { probeXfs } from './xfs/probe';

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
}

/** The file system at the start of `win`; "unknown" (with the first 32 bytes) when none is recognised. */
export async function identify(win: Window): Promise<FileSystemInfo> {
  if (win.size === 0) return { type: 'unknown', size: 0, flags: ['empty'] };
  try {
    return (await identifyKnown(win)) ?? unknown(win, []);
  } catch (err) {
    // A signature was there but its structures are damaged: say so instead of failing the whole disk. Anything
    // but a DiskError is a bug of ours and goes up (the fuzz suite would catch it).
    if (!(err instanceof DiskError)) throw err;
    return unknown(win, [`damaged: ${err.message}`]);
  }
}

async function unknown(win: Window, flags: string[]): Promise<FileSystemInfo> {
  return { type: 'unknown', size: win.size, flags, firstBytes: hex(await win.bytesPadded(0, Math.min(32, win.size))) };
}

async function identifyKnown(win: Window): Promise<FileSystemInfo | undefined> {
  const simple = [probeLuks, probeLvm, probeXfs, probeExfat];
  for (const probe of simple) {
    const info = await probe(win);
    if (info) return info;
  }
  if (win.size >= 512 && parseNtfsBoot(await win.bytes(0, 512))) return (await NtfsReader.open(win)).info;
  const ext = await probeExt(win);
  if (typeof ext === 'string') return unknown(win, [`an ext superblock is there, but ${ext}`]);
  if (ext) return extInfo(ext);
  if (await probeFat(win)) return (await FatReader.open(win)).info;
  for (const probe of [probeBtrfs, probeSwap, probeIso9660]) {
    const info = await probe(win);
    if (info) return info;
  }
  return undefined;
}

/** A reader for the files of the volume; refused by name for the file systems whose files are not read. */
export async function openFileSystem(win: Window): Promise<FileSystemReader> {
  if (win.size >= 512 && parseNtfsBoot(await win.bytes(0, 512))) return NtfsReader.open(win);
  const ext = await probeExt(win);
  if (ext !== undefined) return ExtReader.open(win);
  if (await probeFat(win)) return FatReader.open(win);
  const info = await identify(win);
  throw new DiskError('EUNSUPPORTED', info.type === 'unknown' ? 'no file system diskwright can read was found there' : `the files of ${info.type} file systems are not read yet (only ext2/3/4, FAT and NTFS)`);
}
