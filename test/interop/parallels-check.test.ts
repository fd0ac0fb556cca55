/**
 * Check and repair of Parallels images damaged by patching images qemu-img/qemu-io made: verdicts, exit codes
 * and JSON counts against `qemu-img check` (7.2) on a copy; repaired files clean under `qemu-img check` with
 * guest bytes unchanged (qemu-img compare against the damaged original) except what the damage destroyed.
 * Where qemu 7.2 is wrong the test says so and shows it: its repair of an entry past the end of the file
 * leaves a file its next check calls leaky; it does not see clusters shared by two entries.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { dw, must, run, scratch, seededRandom } from '../helpers';
import { checkParallels } from '../../src-main/formats/parallels/check';
import { DiskError } from '../../src-main/block/errors';
import { counts, create, io, ourCheck, patch32, qemuCheck } from './parallels-common';

const s = scratch('dw-prl-check-');
after(() => s.cleanup());

const INUSE = 0x746f6e59;
const bat = (i: number) => 64 + 4 * i;
let n = 0;

/** 4 MiB, 64 KiB clusters, three clusters allocated (guest clusters 0, 16, 17 at host clusters 1, 2, 3). */
function base(): string {
  const p = s.path(`img${n++}.hds`);
  create(p, '4M', '64k');
  io(p, ['write -P 0x11 0 64k', 'write -P 0x22 1M 100k']);
  return p;
}

function copy(p: string, tag: string): string {
  const c = `${p}.${tag}`;
  copyFileSync(p, c);
  return c;
}

/** Guest bytes of two images are equal for qemu-img. */
function sameGuest(a: string, b: string): boolean {
  return run('qemu-img', ['compare', '-f', 'parallels', '-F', 'parallels', a, b]).status === 0;
}

const SAME_AS_QEMU: Array<[string, (p: string) => void]> = [
  ['in-use mark', (p) => patch32(p, 44, INUSE)],
  ['BAT entry past the end of the file', (p) => patch32(p, bat(5), 1000)],
  ['leaked space after the last cluster (not a whole cluster)', (p) => truncateSync(p, 300000)],
  ['leaked clusters', (p) => truncateSync(p, 262144 + 3 * 65536)],
  ['entry exactly at the end of the file (not outside for qemu)', (p) => patch32(p, bat(6), 4)],
  ['in use, an entry past the end and a leak together', (p) => { patch32(p, 44, INUSE); patch32(p, bat(9), 5000); truncateSync(p, 270000); }],
];

for (const [name, damage] of SAME_AS_QEMU) {
  test(`parallels check, ${name}: verdict, exit code and counts as qemu-img; -r leaks and -r all as qemu-img's report, then clean`, () => {
    const orig = base();
    damage(orig);
    const q = qemuCheck(orig);
    const o = ourCheck(orig);
    assert.equal(o.status, q.status, `exit code (qemu said: ${q.stderr})`);
    assert.deepEqual(counts(o.json), counts(q.json));
    assert.deepEqual(o.stderr.trim().split('\n').filter(Boolean), q.stderr.trim().split('\n').filter(Boolean), 'problem lines');
    for (const mode of ['leaks', 'all']) {
      const ours = copy(orig, `ours-${mode}`);
      const theirs = copy(orig, `qemu-${mode}`);
      const qr = qemuCheck(theirs, '-r', mode);
      const or = ourCheck(ours, '-r', mode);
      if (mode === 'all') {
        assert.equal(or.status, qr.status, `-r ${mode}: exit code`);
        assert.deepEqual(counts(or.json), counts(qr.json), `-r ${mode}: report`);
        const again = run('qemu-img', ['check', '-f', 'parallels', ours]);
        assert.equal(again.status, 0, `qemu-img check after our -r all: ${again.stderr}`);
        assert.ok(statSync(ours).size <= Math.max(statSync(orig).size, 327680), 'the file did not grow');
      } else {
        // -r leaks on an image marked in use: qemu clears the mark on close while reporting it; we keep it.
        // -r leaks leaves corruptions as they are (qemu's close then grows the file over an entry past its end).
        const corrupt = (q.json.corruptions ?? 0) !== 0;
        assert.equal(or.status, corrupt ? 2 : qr.status, `-r leaks: exit code`);
        assert.equal(or.json['leaks-fixed'] ?? 0, qr.json['leaks-fixed'] ?? 0, '-r leaks: leaks fixed');
        assert.equal(run('qemu-img', ['check', '-f', 'parallels', ours]).status, corrupt ? 2 : 0, 'qemu-img check after our -r leaks');
      }
      assert.ok(sameGuest(orig, ours), `-r ${mode}: guest bytes unchanged`);
    }
  });
}

test('parallels check: qemu 7.2 -r all of an entry past EOF grows the file to that entry and its next check finds leaks; ours ends the file at its last cluster', () => {
  const orig = base();
  patch32(orig, bat(5), 20000); // 20000 clusters of 64 KiB: 1.2 GiB, sparse
  const theirs = copy(orig, 'qemu');
  const ours = copy(orig, 'ours');
  assert.equal(qemuCheck(theirs, '-r', 'all').status, 0);
  assert.ok(statSync(theirs).size > 1e9, 'qemu 7.2 grew the file past 1 GB');
  assert.equal(qemuCheck(theirs).status, 3, 'and then calls it leaky');
  assert.equal(ourCheck(ours, '-r', 'all').status, 0);
  assert.equal(statSync(ours).size, 262144);
  assert.equal(qemuCheck(ours).status, 0);
  assert.ok(sameGuest(orig, ours));
});

test('parallels check: a cluster shared by two entries (qemu 7.2 sees nothing) is a corruption; -r all copies it so each entry owns its data', () => {
  const orig = base();
  patch32(orig, bat(1), 1); // guest cluster 1 now shows guest cluster 0's data
  patch32(orig, bat(40), 2); // guest cluster 40 shares with guest cluster 16
  assert.equal(qemuCheck(orig).status, 0, 'qemu 7.2 does not look');
  const o = ourCheck(orig);
  assert.equal(o.status, 2);
  assert.equal(o.json.corruptions, 2);
  assert.deepEqual(o.stderr.trim().split('\n'), ['ERROR cluster 1 shares its data with cluster 0', 'ERROR cluster 40 shares its data with cluster 16']);
  const fixed = copy(orig, 'fixed');
  const r = ourCheck(fixed, '-r', 'all');
  assert.equal(r.status, 0);
  assert.equal(r.json['corruptions-fixed'], 2);
  assert.equal(qemuCheck(fixed).status, 0);
  assert.equal(ourCheck(fixed).status, 0);
  assert.ok(sameGuest(orig, fixed), 'guest bytes unchanged');
  // Each entry owns its data now: writing guest cluster 1 leaves guest cluster 0 alone.
  io(fixed, ['write -P 0x99 64k 64k']);
  assert.equal(run('qemu-io', ['-f', 'parallels', '-c', 'read -P 0x11 0 64k', fixed]).status, 0);
  assert.doesNotMatch(run('qemu-io', ['-f', 'parallels', '-c', 'read -P 0x11 0 64k', fixed]).stdout, /Pattern verification failed/);
});

test('parallels check: an entry pointing into the BAT is a corruption (qemu 7.2 does not look); -r all clears it', () => {
  const orig = s.path('bigbat.hds');
  create(orig, '64M', '4k'); // the BAT takes 17 clusters
  io(orig, ['write -P 0x12 0 8k']);
  patch32(orig, bat(100), 3);
  assert.equal(qemuCheck(orig).status, 0);
  const o = ourCheck(orig);
  assert.equal(o.status, 2);
  assert.match(o.stderr, /cluster 100 lies inside the header and BAT/);
  const fixed = copy(orig, 'fixed');
  assert.equal(ourCheck(fixed, '-r', 'all').status, 0);
  assert.equal(qemuCheck(fixed).status, 0);
  const a = must('qemu-io', ['-f', 'parallels', '-c', 'read -P 0 400k 4k', '-c', 'read -P 0x12 0 8k', fixed]).stdout;
  assert.doesNotMatch(a, /Pattern verification failed/, 'the cluster reads zeros, the rest is kept');
});

test('parallels check: an empty image whose BAT is longer than a cluster is clean for us; qemu 7.2 calls it leaky, and its own repair leaves the file unchanged', () => {
  const p = s.path('empty.hds');
  create(p, '64M', '4k');
  assert.equal(qemuCheck(p).status, 3);
  assert.equal(ourCheck(p).status, 0);
  const before = readFileSync(p);
  const theirs = copy(p, 'qemu');
  qemuCheck(theirs, '-r', 'leaks');
  assert.ok(readFileSync(theirs).equals(before), 'qemu\'s -r leaks changed nothing: there was no leak');
});

test('parallels check: a repair stopped mid-way leaves the image marked in use; the next -r all finishes it', async () => {
  const orig = base();
  patch32(orig, bat(1), 1);
  patch32(orig, bat(2), 1);
  patch32(orig, bat(3), 2);
  const p = copy(orig, 'cut');
  const ac = new AbortController();
  await assert.rejects(
    checkParallels(p, 'all', { signal: ac.signal, onProgress: (done) => done === 1 && ac.abort() }),
    (e: unknown) => e instanceof DiskError && e.code === 'ECANCELLED',
  );
  const q = qemuCheck(p);
  assert.equal(q.status, 2);
  assert.match(q.stderr, /image was not closed correctly/);
  assert.equal(ourCheck(p, '-r', 'all').status, 0);
  assert.equal(qemuCheck(p).status, 0);
  assert.ok(sameGuest(orig, p));
});

test('parallels check: malformed headers give one plain line and qemu-img\'s exit code', () => {
  const cases: Array<[string, (p: string) => void]> = [
    ['version 3', (p) => patch32(p, 16, 3)],
    ['zero tracks', (p) => patch32(p, 28, 0)],
    ['huge tracks', (p) => patch32(p, 28, 0x7fffffff)],
  ];
  for (const [name, damage] of cases) {
    const p = base();
    damage(p);
    const q = run('qemu-img', ['check', '-f', 'parallels', p]);
    const o = dw(['check', '-f', 'parallels', p]);
    assert.equal(o.status, q.status, `${name}: exit code (qemu: ${q.stderr.trim()})`);
    assert.equal(o.stderr.trim().split('\n').length, 1, `${name}: ${o.stderr}`);
    assert.doesNotMatch(o.stderr, /at .*\.ts|RangeError|TypeError/);
  }
  // A BAT longer than the file: qemu 7.2 reads the missing part as zeros and the data area as BAT entries
  // (so it lists "outside" clusters made of guest data); we refuse to check an image whose BAT is not there.
  const p = base();
  patch32(p, 32, 0x1000000);
  assert.equal(run('qemu-img', ['check', '-f', 'parallels', p]).status, 2);
  const o = dw(['check', '-f', 'parallels', p]);
  assert.equal(o.status, 1);
  assert.match(o.stderr.trim(), /^[^\n]*BAT \(16777216 entries\) lies past the end of the file$/);
});

test('parallels check: seeded mutations of the header and BAT give a report or one DiskError; what -r all repairs, qemu-img check finds clean', async () => {
  const seed = Number(process.env.DISKWRIGHT_FUZZ_SEED ?? 7);
  const cases = Number(process.env.DISKWRIGHT_FUZZ_CASES ?? 60);
  const orig = readFileSync(base());
  const r = seededRandom(seed);
  const p = s.path('mutated.hds');
  let repaired = 0;
  for (let i = 0; i < cases; i++) {
    const b = Buffer.from(orig);
    for (let k = 0, n = 1 + Math.floor(r() * 4); k < n; k++) b[r() < 0.3 ? 16 + Math.floor(r() * 48) : 64 + Math.floor(r() * 256)] = Math.floor(r() * 256);
    writeFileSync(p, b);
    const label = `seed ${seed} case ${i}`;
    let report;
    try {
      report = await checkParallels(p, 'all');
    } catch (e) {
      assert.ok(e instanceof DiskError, `${label}: ${(e as Error).stack}`);
      continue;
    }
    repaired++;
    assert.equal(report.corruptions + report.leaks, 0, `${label}: nothing left after -r all`);
    const again = await checkParallels(p, 'none');
    assert.equal(again.corruptions + again.leaks, 0, `${label}: our check after the repair`);
    assert.equal(run('qemu-img', ['check', '-f', 'parallels', p]).status, 0, `${label}: qemu-img check after the repair`);
  }
  assert.ok(repaired > cases / 3, `most mutations are checkable (${repaired}/${cases})`);
});
