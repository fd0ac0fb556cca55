/**
 * Files the system asks the app to open: the paths on a launch's command line (a double-click on an associated
 * file on Linux and Windows starts `diskwright FILE`; a second launch passes its argv to the first through
 * 'second-instance') and macOS's 'open-file'. Only existing regular files are taken; flags and the program's
 * own arguments are not paths.
 */
import { statSync } from 'node:fs';
import * as nodePath from 'node:path';

/**
 * The image paths in a command line. `argv` is process.argv (or the second instance's): the executable, then,
 * when not packaged, the app's folder or script; Chromium's switches start with '-'.
 */
export function imagePathsFromArgv(argv: readonly string[], cwd: string, packaged: boolean): string[] {
  const args = argv.slice(packaged ? 1 : 2);
  const out: string[] = [];
  for (const arg of args) {
    if (arg === '' || arg.startsWith('-') || arg.includes('\0') || arg.length > 4096) continue;
    const full = nodePath.resolve(cwd, arg);
    try {
      if (statSync(full).isFile()) out.push(full);
    } catch {
      // not a file: skip it
    }
  }
  return out;
}

/**
 * Holds open requests until the window can take them (macOS sends 'open-file' before 'ready'; a window may
 * still be loading), then hands each one over in order.
 */
export class OpenQueue {
  private readonly pending: string[] = [];
  private deliver: ((path: string) => void) | undefined;

  push(path: string): void {
    if (this.deliver) this.deliver(path);
    else if (this.pending.length < 16) this.pending.push(path);
  }

  /** The window is ready: what waited is delivered now, and later requests at once. */
  ready(deliver: (path: string) => void): void {
    this.deliver = deliver;
    for (const p of this.pending.splice(0)) deliver(p);
  }

  /** The window went away: requests wait again. */
  notReady(): void {
    this.deliver = undefined;
  }
}
