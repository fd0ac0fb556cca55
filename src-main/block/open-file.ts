/**
 * The open files the block layer holds (an image's, an image lock's), and the few path look-ups it makes, without
 * node:fs/promises where the command line does not need it.
 *
 * Why: Node's FileHandle lives in node:fs/promises, whose first use compiles readline's interface, the file
 * watchers and directory streams with it: 2.0 ms of every `diskwright info` (measured; the command's whole
 * overhead above a bare node start is ~20 ms, docs/performance.md). Under blocking I/O (the command line's choice,
 * useBlockingIo) a descriptor with blocking calls does every job a FileHandle does here; what FileHandle adds,
 * waiting for reads and writes still under way on the thread pool before it closes the descriptor, cannot arise
 * when nothing is ever under way. The app and the browser host keep FileHandle.
 */
import * as fs from 'node:fs';
import { promisify } from 'node:util';

/** What the block layer uses of an open file; Node's FileHandle has all of it. */
export interface OpenFile {
  readonly fd: number;
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>;
  stat(): Promise<fs.Stats>;
  truncate(length: number): Promise<void>;
  datasync(): Promise<void>;
  close(): Promise<void>;
}

let blockingIo = false;

/** Whether reads and writes block (block/file.ts useBlockingIo, set by the command line before it opens anything). */
export function blockingIoOn(): boolean {
  return blockingIo;
}

export function setBlockingIo(on: boolean): void {
  blockingIo = on;
}

/** A descriptor worked with blocking calls; the methods are async so that errors arrive as FileHandle's do. */
class BlockingFile implements OpenFile {
  private closed = false;
  constructor(readonly fd: number) {}

  async read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    return { bytesRead: fs.readSync(this.fd, buffer, offset, length, position) };
  }

  async write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }> {
    return { bytesWritten: fs.writeSync(this.fd, buffer, offset, length, position) };
  }

  async stat(): Promise<fs.Stats> {
    return fs.fstatSync(this.fd);
  }

  async truncate(length: number): Promise<void> {
    fs.ftruncateSync(this.fd, length);
  }

  async datasync(): Promise<void> {
    fs.fdatasyncSync(this.fd);
  }

  async close(): Promise<void> {
    // Once only, as FileHandle: a second close must not close a descriptor number opened since by someone else.
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }
}

/** Opens `path` (flags as fs.open takes them): a blocking descriptor under blocking I/O, a FileHandle otherwise. */
export async function openFile(path: string, flags: number | string): Promise<OpenFile> {
  if (blockingIo) return new BlockingFile(fs.openSync(path, flags));
  return fs.promises.open(path, flags);
}

/** fs.stat, fs.lstat, fs.readlink, fs.realpath and fs.readFile as promises, through their callback forms. */
export const statPath = promisify(fs.stat);
export const lstatPath = promisify(fs.lstat);
export const readLink = promisify(fs.readlink);
export const realPath = promisify(fs.realpath);
export const readTextFile = (path: string): Promise<string> => promisify(fs.readFile)(path, 'utf8');
