import * as fs from 'node:fs';
import * as nodePath from 'node:path';

/** The optional native helpers (native/seek_hole.c), built by scripts/build.mjs where a C compiler exists. */
export interface SeekHoleBinding {
  seekData(fd: number, offset: number): number; // -1: no data at or after offset
  seekHole(fd: number, offset: number): number;
}

function findRoot(): string | undefined {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(nodePath.join(dir, 'package.json')) && fs.existsSync(nodePath.join(dir, 'native'))) return dir;
    dir = nodePath.dirname(dir);
  }
  return undefined;
}

function load(): SeekHoleBinding | undefined {
  if (process.env.DISKWRIGHT_NO_NATIVE === '1') return undefined;
  const root = findRoot();
  if (!root) return undefined;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(nodePath.join(root, 'dist', 'native', 'seek_hole.node')) as SeekHoleBinding;
  } catch {
    return undefined;
  }
}

export const seekHoleBinding: SeekHoleBinding | undefined = load();
