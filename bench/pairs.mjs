// Alternating runs of a few commands on a busy machine: each round runs every command once, in turn, so
// that load from other work falls on all of them alike; medians of wall time and CPU time (user + sys) and
// the largest peak RSS are printed, with ratios against the first command, and each command's fastest wall time
// (on this machine one round in several is slowed by the kernel's write-back of earlier rounds' gigabytes: the
// best is the steadier figure there). Nothing here asserts a timing.
//
//   node bench/pairs.mjs [--rounds 5] [--before 'rm -f out.*'] -- 'qemu-img convert ...' 'node bin/diskwright.js convert ...'
//
// Each command runs under /bin/sh -c through /usr/bin/time (GNU time's %e %U %S %M). --before runs, untimed,
// ahead of every command (delete the last target, so no run pays for freeing another's file).
import './node-env.mjs';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const rounds = Number(opt('--rounds', '5'));
const before = opt('--before', '');
const sep = args.indexOf('--');
const commands = sep >= 0 ? args.slice(sep + 1) : [];
if (commands.length === 0) {
  console.error('usage: node bench/pairs.mjs [--rounds N] [--before CMD] -- CMD [CMD...]');
  process.exit(2);
}

// GNU time prints CPU seconds with two decimals: 10 ms steps, too coarse for a start-up of 150 ms. Where python3
// is present, its os.wait4 gives the same rusage to the microsecond (printed on the same last line).
const WAIT4 = [
  'import os, sys, time',
  't = time.monotonic()',
  "pid = os.spawnv(os.P_NOWAIT, '/bin/sh', ['/bin/sh', '-c', sys.argv[1]])",
  '_, status, ru = os.wait4(pid, 0)',
  "sys.stderr.write('DWTIME %.4f %.6f %.6f %d\\n' % (time.monotonic() - t, ru.ru_utime, ru.ru_stime, ru.ru_maxrss))",
  'sys.exit(os.waitstatus_to_exitcode(status))',
].join('\n');
const precise = spawnSync('python3', ['-c', 'import os; os.wait4'], { stdio: 'ignore' }).status === 0;

/** One timed run: wall, user, sys seconds and peak RSS (KiB), from the timer's last line. */
export function timeOnce(cmd) {
  const r = precise
    ? spawnSync('python3', ['-c', WAIT4, cmd], { encoding: 'utf8', maxBuffer: 1 << 26 })
    : spawnSync('/usr/bin/time', ['-f', 'DWTIME %e %U %S %M', '/bin/sh', '-c', cmd], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const m = /DWTIME (\S+) (\S+) (\S+) (\d+)\s*$/.exec(r.stderr);
  if (r.status !== 0 || !m) throw new Error(`${cmd}: exit ${r.status}\n${r.stderr}`);
  return { wall: Number(m[1]), cpu: Number(m[2]) + Number(m[3]), rss: Number(m[4]) / 1024 };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const runs = commands.map(() => []);
for (let r = 0; r < rounds; r++) {
  commands.forEach((cmd, i) => {
    if (before) spawnSync('/bin/sh', ['-c', before]);
    runs[i].push(timeOnce(cmd));
  });
}
const base = { wall: median(runs[0].map((x) => x.wall)), best: Math.min(...runs[0].map((x) => x.wall)), cpu: median(runs[0].map((x) => x.cpu)) };
const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
console.log(`medians of ${rounds} alternating rounds; ratio = / first command; CPU by ${precise ? 'wait4 (µs)' : 'GNU time (10 ms steps)'}; load average ${load}`);
console.log('wall s'.padStart(8) + 'ratio'.padStart(7) + 'best s'.padStart(8) + 'ratio'.padStart(7) + 'cpu s'.padStart(8) + 'ratio'.padStart(7) + 'RSS MB'.padStart(8) + '  command');
commands.forEach((cmd, i) => {
  const wall = median(runs[i].map((x) => x.wall));
  const cpu = median(runs[i].map((x) => x.cpu));
  const rss = Math.max(...runs[i].map((x) => x.rss));
  const fastest = Math.min(...runs[i].map((x) => x.wall));
  console.log(wall.toFixed(2).padStart(8) + (wall / base.wall).toFixed(2).padStart(7) + fastest.toFixed(2).padStart(8) + (fastest / base.best).toFixed(2).padStart(7) + cpu.toFixed(3).padStart(8) + (cpu / base.cpu).toFixed(2).padStart(7) + rss.toFixed(0).padStart(8) + `  ${cmd}`);
});
