/**
 * Named targets (convert --target, lint --target), judged by qemu-img: an Azure export of a 64 MiB + 1 sector
 * disk is a fixed VHD of 65 MiB with its footer at the end that qemu-img reads with that size; VirtualBox,
 * ESXi, Hyper-V and KVM exports are the formats and subformats qemu-img reports, with the same content; lint
 * names what a target would refuse (a dynamic VHD for Azure, a size not in whole MiB) and --fix puts right
 * what it safely can; a disk too large for Azure is refused before anything is written.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, openSync, readSync, closeSync } from 'node:fs';
import { dw, dwOk, must, qemuIo, scratch } from '../helpers';

const s = scratch('dw-targets-');
after(() => s.cleanup());

const MiB = 1024 * 1024;
const qinfo = (path: string, fmt?: string) => JSON.parse(must('qemu-img', ['info', '--output', 'json', ...(fmt ? ['-f', fmt] : []), path]).stdout);

function source(): string {
  const src = s.path('src.qcow2');
  if (!existsSync(src)) {
    must('qemu-img', ['create', '-f', 'qcow2', src, String(64 * MiB + 512)]);
    qemuIo(src, 'qcow2', ['write -P 0x5a 0 1M', 'write -P 0x6b 63M 512k', `write -P 0x7c ${64 * MiB} 512`]);
  }
  return src;
}

test('convert --target azure: a 64 MiB + 1 sector disk becomes a fixed VHD of 65 MiB, footer at the end, read by qemu-img with that size; lint says ready', () => {
  const out = s.path('azure.vhd');
  const r = dwOk(['convert', '--target', 'azure', source(), out]);
  assert.match(r.stderr, /rounded up from 67109376 to 68157440 bytes \(1048064 bytes more/);
  const info = qinfo(out, 'vpc');
  assert.equal(info['virtual-size'], 65 * MiB);
  assert.equal(statSync(out).size, 65 * MiB + 512, 'a fixed VHD: the data and a 512-byte footer');
  const footer = Buffer.alloc(512);
  const fd = openSync(out, 'r');
  readSync(fd, footer, 0, 512, 65 * MiB);
  closeSync(fd);
  assert.equal(footer.subarray(0, 8).toString('latin1'), 'conectix');
  assert.equal(footer.readUInt32BE(60), 2, 'disk type fixed');
  assert.equal(Number(footer.readBigUInt64BE(48)), 65 * MiB, "the footer's current size is the virtual size");
  // The same guest bytes (the rounding adds zeros, which a non-strict compare accepts).
  // (qemu-img warns that the sizes differ and finds the content identical: the added MiB reads as zeros.)
  assert.match(must('qemu-img', ['compare', '-f', 'qcow2', '-F', 'vpc', source(), out]).stdout, /^Images are identical\.$/m);
  const lint = dwOk(['lint', '--target', 'azure', out]);
  assert.match(lint.stdout, /ready for Azure/);
});

test('lint --target azure: a dynamic VHD and a size that is not whole MiB are named, one line each, exit 2', () => {
  const dyn = s.path('dyn.vhd');
  must('qemu-img', ['create', '-f', 'vpc', '-o', 'subformat=dynamic', dyn, '100M']);
  const r = dw(['lint', '--target', 'azure', dyn]);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stdout, /Azure takes only fixed VHDs; this one is dynamic/);
  const odd = s.path('odd.vhd');
  must('qemu-img', ['create', '-f', 'vpc', '-o', 'subformat=fixed,force_size=on', odd, String(10 * MiB + 4096)]);
  const r2 = dw(['lint', '--target', 'azure', '--output', 'json', odd]);
  assert.equal(r2.status, 2);
  const j = JSON.parse(r2.stdout);
  assert.deepEqual(j.findings.map((f: { rule: string }) => f.rule), ['size-mib']);
  // The sizes grouped, as qemu-img reads them (-f vpc: a fixed VHD has no header its probe knows), and the next whole MiB.
  const made = (JSON.parse(must('qemu-img', ['info', '-f', 'vpc', '--output=json', odd]).stdout) as { 'virtual-size': number })['virtual-size'];
  const group = (n: number) => n.toLocaleString('en-US');
  const next = Math.ceil(made / MiB) * MiB;
  assert.equal(j.findings[0].message, `the virtual size ${group(made)} bytes is not a whole number of MiB; Azure refuses it (the next whole MiB is ${next / MiB} MiB)`);
  const qcow = s.path('plain.qcow2');
  must('qemu-img', ['create', '-f', 'qcow2', qcow, '1M']);
  const r3 = dw(['lint', '--target', 'azure', qcow]);
  assert.equal(r3.status, 2);
  assert.match(r3.stdout, /Azure takes VHD images; this one is QCOW2 \(convert it for Azure\)/);
});

test('convert --target virtualbox, esxi, hyperv, kvm: the format and subformat each host takes, same content (qemu-img compare), qemu-img check clean', () => {
  const cases: Array<[string, string, (i: Record<string, unknown>) => void]> = [
    ['virtualbox', 'vdi', () => undefined],
    ['esxi', 'vmdk', (i) => assert.equal((i['format-specific'] as { data: { 'create-type': string } }).data['create-type'], 'streamOptimized')],
    ['hyperv', 'vhdx', () => undefined],
    ['kvm', 'qcow2', (i) => assert.equal((i['format-specific'] as { data: { compat: string } }).data.compat, '1.1')],
  ];
  for (const [target, fmt, more] of cases) {
    const out = s.path(`t-${target}.img`);
    dwOk(['convert', '--target', target, source(), out]);
    const info = qinfo(out);
    assert.equal(info.format, fmt, target);
    assert.equal(info['virtual-size'], 64 * MiB + 512, target);
    more(info);
    assert.equal(must('qemu-img', ['compare', '-f', 'qcow2', '-F', fmt, source(), out]).stdout.trim(), 'Images are identical.', target);
    if (fmt !== 'vhdx') must('qemu-img', ['check', '-f', fmt, out]);
    assert.equal(dw(['lint', '--target', target, out]).status, 0, `${target}: lint`);
  }
});

test('convert --target azure of a disk larger than a page blob: refused in one line before anything is written; -O with --target refused', () => {
  const big = s.path('big.qcow2');
  must('qemu-img', ['create', '-f', 'qcow2', big, '9T']);
  const out = s.path('big.vhd');
  const r = dw(['convert', '--target', 'azure', big, out]);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /Azure takes a VHD of at most 8388607 MiB/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.equal(existsSync(out), false);
  const r2 = dw(['convert', '--target', 'azure', '-O', 'qcow2', source(), out]);
  assert.notEqual(r2.status, 0);
  assert.match(r2.stderr, /leave out -O/);
  assert.ok(readFileSync(source()).length > 0);
});

test('lint --target azure --fix: a fixed VHD from qemu-img (force_size, and CHS-rounded) grows to the next whole MiB with its data kept; qemu-img reads the new size, compares equal over the old size, zeros after; lint then says ready', () => {
  for (const [name, opts, asked] of [
    ['force.vhd', 'subformat=fixed,force_size=on', 10 * MiB + 4096],
    ['chs.vhd', 'subformat=fixed', 20 * MiB + 7 * 512],
  ] as const) {
    const img = s.path(name);
    must('qemu-img', ['create', '-f', 'vpc', '-o', opts, img, String(asked)]);
    const before = qinfo(img, 'vpc')['virtual-size'] as number;
    assert.notEqual(before % MiB, 0, `${name}: the case needs a size that is not whole MiB`);
    qemuIo(img, 'vpc', ['write -P 0x3c 0 64k', `write -P 0x4d ${before - 4096} 4096`]);
    const plain = s.path(`${name}.before.raw`);
    must('qemu-img', ['convert', '-f', 'vpc', '-O', 'raw', img, plain]);
    const r = dwOk(['lint', '--target', 'azure', '--fix', img]);
    assert.match(r.stdout, /grew the disk from \d+ to \d+ bytes/, name);
    const want = Math.ceil(before / MiB) * MiB;
    const info = qinfo(img, 'vpc');
    assert.equal(info['virtual-size'], want, `${name}: qemu-img reads the new size`);
    assert.equal(statSync(img).size, want + 512, `${name}: the data and one footer`);
    // qemu-img has no check for vpc; its open warns on a footer checksum it does not accept.
    assert.equal(must('qemu-img', ['info', '-f', 'vpc', img]).stderr, '', `${name}: qemu-img opens it without a warning`);
    // The old content is all there; what was added reads as zeros (qemu-img compare of a shorter raw: the rest must be zero).
    assert.match(must('qemu-img', ['compare', '-f', 'raw', '-F', 'vpc', plain, img]).stdout, /size mismatch!\nImages are identical\./, name);
    assert.equal(dw(['lint', '--target', 'azure', img]).status, 0, `${name}: ready after the fix`);
  }
  // A dynamic VHD is not resized: the finding stays, named as one to convert.
  const dyn = s.path('dyn-fix.vhd');
  must('qemu-img', ['create', '-f', 'vpc', '-o', 'subformat=dynamic', dyn, '10M']);
  const r = dw(['lint', '--target', 'azure', '--fix', dyn]);
  assert.equal(r.status, 2);
  assert.match(r.stdout, /convert it for Azure/);
});
