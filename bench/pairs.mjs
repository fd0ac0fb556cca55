// Alternating runs of a few commands on a busy machine: each round runs every command once, in turn, so
// that load from other work falls on all of them alike; medians of wall time and CPU time (user + sys) and
// the largest peak RSS are printed, with ratios against the first command. Nothing here asserts a timing.
//
//   node bench/pairs.mjs [--rounds 5] [--before 'rm -f out.*'] -- 'qemu-img convert ...' 'node bin/diskwright.js convert ...'
//
// Each command runs under /bin/sh -c through /usr/bin/time (GNU time's %e %U %S %M). --before runs, untimed,
// ahead of every command (delete the last target, so no run pays for freeing another's file).
import { spawnSync } from 'node:child_process';

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

/** One timed run: wall, user, sys seconds and peak RSS (KiB), from GNU time's last line. */
export function timeOnce(cmd) {
  const r = spawnSync('/usr/bin/time', ['-f', 'DWTIME %e %U %S %M', '/bin/sh', '-c', cmd], { encoding: 'utf8', maxBuffer: 1 << 26 });
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
const base = { wall: median(runs[0].map((x) => x.wall)), cpu: median(runs[0].map((x) => x.cpu)) };
console.log(`medians of ${rounds} alternating rounds; ratio = / first command`);
console.log('wall s'.padStart(8) + 'ratio'.padStart(7) + 'cpu s'.padStart(8) + 'ratio'.padStart(7) + 'RSS MB'.padStart(8) + '  command');
commands.forEach((cmd, i) => {
  const wall = median(runs[i].map((x) => x.wall));
  const cpu = median(runs[i].map((x) => x.cpu));
  const rss = Math.max(...runs[i].map((x) => x.rss));
  console.log(wall.toFixed(2).padStart(8) + (wall / base.wall).toFixed(2).padStart(7) + cpu.toFixed(2).padStart(8) + (cpu / base.cpu).toFixed(2).padStart(7) + rss.toFixed(0).padStart(8) + `  ${cmd}`);
});
