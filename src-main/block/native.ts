import * as fs from 'node:fs';
import * as nodePath from 'node:path';

/** The optional native helpers (native/fileops.c), built by scripts/build.mjs where a C compiler exists. */
export interface NativeFileOps {
  seekData(fd: number, offset: number): number; // -1: no data at or after offset
  seekHole(fd: number, offset: number): number;
  /** lseek(fd, 0, SEEK_END): a block device's size. */
  sizeOf(fd: number): number;
  /** Takes (shared 1) or releases (0) an OFD read lock on [start, start+length): 0, or the errno. */
  lockBytes(fd: number, start: number, length: number, shared: 0 | 1): number;
  /** 1 when another open file description holds a lock in the range, 0 when none, -errno on failure. */
  testBytes(fd: number, start: number, length: number): number;
  /**
   * fallocate(PUNCH_HOLE | KEEP_SIZE) on [offset, offset+length): 0, or the errno (EOPNOTSUPP: the file system
   * cannot). Absent from a helper built before it existed.
   */
  punchHole?(fd: number, offset: number, length: number): number;
  /**
   * copy_file_range from fdIn at offIn to fdOut at offOut, off the event loop: the bytes copied (fewer when the
   * source ends or the kernel stopped part-way), or -errno when it copied nothing (EXDEV, ENOSYS, EOPNOTSUPP...).
   * Absent from a helper built before it existed.
   */
  copyRange?(fdIn: number, offIn: number, fdOut: number, offOut: number, length: number): Promise<number>;
}

function findRoot(): string | undefined {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(nodePath.join(dir, 'package.json')) && fs.existsSync(nodePath.join(dir, 'native'))) return dir;
    dir = nodePath.dirname(dir);
  }
  return undefined;
}

function load(): NativeFileOps | undefined {
  if (process.env.DISKWRIGHT_NO_NATIVE === '1') return undefined;
  const root = findRoot();
  if (!root) return undefined;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(nodePath.join(root, 'dist', 'native', 'fileops.node')) as NativeFileOps;
  } catch {
    return undefined;
  }
}

export const nativeFileOps: NativeFileOps | undefined = load();
