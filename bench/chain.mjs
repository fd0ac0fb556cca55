// The chain commands and the check at scale against qemu-img on the same inputs (issue 24): rebase, compare,
// check and commit, alternating rounds, medians of wall and CPU time (user + sys, GNU time) with the best run of
// each in brackets (on a shared machine the best is the steadier figure), and the largest peak RSS, as ratios
// ours / qemu-img. Nothing here asserts a timing; every result is checked against qemu-img's.
//
//   node bench/chain.mjs                       all rows, 5 rounds
//   node bench/chain.mjs --rounds 3 --only rebase,check
//
// Inputs (made here by qemu-img and qemu-io, so both tools read what qemu writes):
// - rebase: base.qcow2 (1 GiB, data in every other MiB) <- mid.qcow2 (512 KiB written in every fourth MiB) <- top.qcow2
//   (4 MiB); top rebased onto base (in-chain: only what mid holds needs comparing) and onto other.qcow2, a copy of
//   base in another file (not in the chain: every unallocated range of top is compared).
// - compare: base.qcow2 against its raw convert (identical), and against that raw with 4 KiB changed in the last
//   MiB (differing at the end, so the whole image is read).
// - check: a 1 TiB qcow2 with 100 snapshots, 1 MiB written at a different place before each (qemu-img snapshot -c).
// - commit: 192 MiB written into an overlay (6 runs of 32 MiB) of a 1 GiB base with data in every other MiB,
//   committed into the base (both tools from copies of the same files).
import './node-env.mjs';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'bin', 'diskwright.js');
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
};
const rounds = Number(arg('--rounds', '5'));
const only = arg('--only', '');
const want = (row) => !only || only.split(',').some((o) => row.startsWith(o));
const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'dw-chain-'));
const p = (n) => join(dir, n);

function sh(cmd, args, ok = [0]) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (!ok.includes(r.status)) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}\n${r.stderr || r.error}`);
  return r;
}
/** One timed run: wall and CPU seconds, peak RSS in MB. */
function timed(cmd, args, ok) {
  const r = sh('/usr/bin/time', ['-f', 'DWTIME %e %U %S %M', cmd, ...args], ok);
  const m = /DWTIME (\S+) (\S+) (\S+) (\d+)\s*$/.exec(r.stderr);
  return { wall: Number(m[1]), cpu: Number(m[2]) + Number(m[3]), rss: Number(m[4]) / 1024, out: r.stdout };
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const best = (xs) => Math.min(...xs);
const qemuIo = (img, fmt, cmds) => sh('qemu-io', ['-f', fmt, ...cmds.flatMap((c) => ['-c', c]), img]);

/** A 1 GiB qcow2 with data in every other MiB. */
function everyOther(path) {
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', path, '1G']);
  const cmds = [];
  for (let m = 0; m < 1024; m += 2) cmds.push(`write -P ${(m % 250) + 1} ${m}M 1M`);
  qemuIo(path, 'qcow2', cmds);
}

/**
 * Runs `row`'s two commands alternately; `before` (untimed) prepares the inputs of each run, `verify` checks the
 * last results. Prints one line of medians and ratios.
 */
function row(name, { qemu, ours, before = () => undefined, verify = () => undefined, ok }) {
  if (!want(name)) return;
  const runs = { qemu: [], ours: [] };
  for (let r = 0; r < rounds; r++) {
    before('qemu');
    runs.qemu.push(timed(qemu[0], qemu.slice(1), ok));
    before('ours');
    runs.ours.push(timed(process.execPath, [cli, ...ours], ok));
  }
  verify(runs.qemu.at(-1).out, runs.ours.at(-1).out);
  const m = (k, side) => median(runs[side].map((x) => x[k]));
  const b = (k, side) => best(runs[side].map((x) => x[k]));
  const rss = (side) => Math.max(...runs[side].map((x) => x.rss)).toFixed(0);
  const figure = (k) =>
    `${m(k, 'ours').toFixed(2)} / ${m(k, 'qemu').toFixed(2)} s = ${(m(k, 'ours') / m(k, 'qemu')).toFixed(2)}x` +
    ` [best ${(b(k, 'ours') / b(k, 'qemu')).toFixed(2)}x]`;
  console.log(
    `${name.padEnd(34)} wall ${figure('wall')}   CPU ${figure('cpu')}` +
      `   RSS ${rss('ours')} / ${rss('qemu')} MB   [load ${loadavg().map((x) => x.toFixed(1)).join(' ')}]`,
  );
}
const same = (a, b) => sh('qemu-img', ['compare', a, b]);

try {
  console.log(`medians of ${rounds} alternating rounds, ours / qemu-img`);
  if (want('rebase') || want('compare')) {
    everyOther(p('base.qcow2'));
  }
  if (want('rebase')) {
    copyFileSync(p('base.qcow2'), p('other.qcow2'));
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', p('mid.qcow2')]);
    const cmds = [];
    for (let m = 1; m < 1024; m += 4) cmds.push(`write -P 7 ${m}M 512k`);
    qemuIo(p('mid.qcow2'), 'qcow2', cmds);
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', p('top.qcow2')]);
    qemuIo(p('top.qcow2'), 'qcow2', ['write -P 9 100M 4M']);
    for (const onto of ['base', 'other']) {
      row(`rebase 1 GiB chain onto ${onto === 'base' ? 'its base' : 'a copy'}`, {
        before: (side) => copyFileSync(p('top.qcow2'), p(`t-${side}.qcow2`)),
        qemu: ['qemu-img', 'rebase', '-b', `${onto}.qcow2`, '-F', 'qcow2', p('t-qemu.qcow2')],
        ours: ['rebase', '-b', `${onto}.qcow2`, '-F', 'qcow2', p('t-ours.qcow2')],
        verify: () => {
          same(p('t-qemu.qcow2'), p('t-ours.qcow2'));
          same(p('top.qcow2'), p('t-ours.qcow2'));
        },
      });
    }
  }
  if (want('compare')) {
    sh('qemu-img', ['convert', '-O', 'raw', p('base.qcow2'), p('base.raw')]);
    copyFileSync(p('base.raw'), p('changed.raw'));
    qemuIo(p('changed.raw'), 'raw', ['write -P 200 1023M 4k']);
    for (const [label, b, ok] of [['equal', 'base.raw', [0]], ['differing at the end', 'changed.raw', [1]]]) {
      row(`compare 1 GiB, ${label}`, {
        qemu: ['qemu-img', 'compare', p('base.qcow2'), p(b)],
        ours: ['compare', p('base.qcow2'), p(b)],
        ok,
        verify: (q, o) => {
          if (q !== o) throw new Error(`compare says ${o} where qemu-img says ${q}`);
        },
      });
    }
  }
  if (want('check')) {
    const img = p('tb.qcow2');
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', img, '1T']);
    for (let i = 1; i <= 100; i++) {
      qemuIo(img, 'qcow2', [`write -P ${i} ${(i * 10007) % 1048576}M 1M`]);
      sh('qemu-img', ['snapshot', '-c', `s${i}`, img]);
    }
    row('check 1 TiB, 100 snapshots', {
      qemu: ['qemu-img', 'check', img],
      ours: ['check', img],
      verify: (q, o) => {
        if (q !== o) throw new Error(`check prints\n${o}\nwhere qemu-img prints\n${q}`);
      },
    });
  }
  if (want('commit')) {
    everyOther(p('cbase.qcow2'));
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'cbase.qcow2', '-F', 'qcow2', p('cover.qcow2')]);
    qemuIo(p('cover.qcow2'), 'qcow2', [0, 160, 330, 500, 670, 900].map((m, k) => `write -P ${k + 50} ${m}M 32M`));
    sh('qemu-img', ['convert', '-O', 'raw', p('cover.qcow2'), p('expected.raw')]);
    row('commit 192 MiB into a 1 GiB base', {
      before: (side) => {
        copyFileSync(p('cbase.qcow2'), p(`b-${side}.qcow2`));
        sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', `b-${side}.qcow2`, '-F', 'qcow2', p(`o-${side}.qcow2`)]);
        copyFileSync(p('cover.qcow2'), p(`o-tmp-${side}.qcow2`));
        // The overlay's data, naming this side's base.
        sh('qemu-img', ['rebase', '-u', '-b', `b-${side}.qcow2`, '-F', 'qcow2', p(`o-tmp-${side}.qcow2`)]);
        copyFileSync(p(`o-tmp-${side}.qcow2`), p(`o-${side}.qcow2`));
      },
      qemu: ['qemu-img', 'commit', p('o-qemu.qcow2')],
      ours: ['commit', p('o-ours.qcow2')],
      verify: () => {
        same(p('b-qemu.qcow2'), p('expected.raw'));
        same(p('b-ours.qcow2'), p('expected.raw'));
        sh('qemu-img', ['check', p('b-ours.qcow2')]);
      },
    });
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
