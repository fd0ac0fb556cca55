/**
 * Which program holds an image's lock, for the message that says the image is in use. qemu locks images with
 * open file description (OFD) locks, which /proc/locks lists with pid -1; the kernel does list them under the
 * descriptor that holds them, in /proc/PID/fdinfo/FD ("lock:" lines). So: look through the processes' open
 * descriptors for the image (by device and inode), keep those with a lock line, and read their command lines.
 * Linux only; elsewhere, or where /proc cannot be read (another user's processes), nobody is named and the
 * message says "another program".
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';

export interface LockHolder {
  pid: number;
  /** The command line, arguments joined by spaces (shortened). */
  command: string;
}

/** Bounds on the search, so a machine with very many processes or descriptors is not walked forever. */
const MAX_PROCESSES = 32768;
const MAX_FDS = 8192;
const MAX_COMMAND = 160;

function commandOf(pid: number): string {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'latin1');
    const line = raw.split('\0').filter(Boolean).join(' ');
    const text = line || readFileSync(`/proc/${pid}/comm`, 'latin1').trim();
    return text.length > MAX_COMMAND ? `${text.slice(0, MAX_COMMAND - 1)}…` : text;
  } catch {
    return '';
  }
}

/** The processes other than this one holding a lock on the file (dev, ino); empty when none can be told. */
export function lockHolders(dev: number, ino: number): LockHolder[] {
  if (process.platform !== 'linux') return [];
  let pids: number[];
  try {
    pids = readdirSync('/proc')
      .filter((n) => /^\d+$/.test(n))
      .map(Number)
      .filter((p) => p !== process.pid)
      .slice(0, MAX_PROCESSES);
  } catch {
    return [];
  }
  const out: LockHolder[] = [];
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`).slice(0, MAX_FDS);
    } catch {
      continue; // gone, or not ours to look at
    }
    for (const fd of fds) {
      try {
        const st = statSync(`/proc/${pid}/fd/${fd}`);
        if (st.dev !== dev || st.ino !== ino) continue;
        const fdinfo = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'latin1');
        if (!/^lock:/m.test(fdinfo)) continue;
        out.push({ pid, command: commandOf(pid) });
        break;
      } catch {
        // the descriptor closed meanwhile
      }
    }
  }
  return out;
}

/** "qemu-io (pid 1234: qemu-io -f qcow2 vm.qcow2)", or "another program (a running VM, or qemu-img)". */
export function describeLockHolders(dev: number, ino: number): string {
  const holders = lockHolders(dev, ino);
  if (holders.length === 0) return 'another program (a running VM, or qemu-img)';
  const one = (h: LockHolder) => {
    const name = h.command.split(' ')[0]?.split('/').pop() || 'a program';
    return `${name} (pid ${h.pid}${h.command ? `: ${h.command}` : ''})`;
  };
  return holders.length === 1 ? one(holders[0]) : `${holders.slice(0, 3).map(one).join(', ')}${holders.length > 3 ? ` and ${holders.length - 3} more` : ''}`;
}
