/**
 * Text output of the command line without process.stdout / process.stderr. Touching either makes Node build a
 * stream for it (tty, net, stream and readline modules compiled: about 10 ms of CPU on every run, as much as
 * all of `info`'s own work), while one write(2) costs next to nothing. So lines go to the descriptor with
 * fs.writeSync, which on Linux is what process.stdout does for files, pipes and terminals anyway (they are
 * written synchronously), so the order of what is printed is the same.
 *
 * Where the direct write fails (a non-blocking descriptor handed in by a parent answers EAGAIN, a closed
 * pipe EPIPE, anything else), that line and every later one go through Node's stream as before, which knows
 * how to wait and how to report.
 */
import { writeSync } from 'node:fs';

export type StreamName = 'stdout' | 'stderr';

const FD: Record<StreamName, number> = { stdout: 1, stderr: 2 };
/** Streams that once took a write: from then on everything for them goes there, so nothing overtakes it. */
const viaStream = new Set<StreamName>();

/** Node's stream for `name`; whoever writes to it directly (binary output) calls this, so lines follow it. */
export function streamFor(name: StreamName): NodeJS.WriteStream {
  viaStream.add(name);
  return process[name];
}

/** Writes `text` whole to stdout or stderr: directly when it can, else through Node's stream. */
export function writeText(name: StreamName, text: string): void {
  if (text === '') return;
  if (!viaStream.has(name)) {
    const bytes = Buffer.from(text, 'utf8');
    let done = 0;
    try {
      while (done < bytes.length) done += writeSync(FD[name], bytes, done, bytes.length - done);
      return;
    } catch {
      // The rest of this text, and everything after it, goes through the stream (see the comment above).
      streamFor(name).write(bytes.subarray(done));
      return;
    }
  }
  process[name].write(text);
}
