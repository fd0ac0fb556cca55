import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeOptions, resolveOptions, splitOptionString, validateOptions } from '../../src-main/services/options';
import { driverFor } from '../../src-main/registry';
import { FORMAT_NAMES } from '../../src-shared/api';
import { DiskError } from '../../src-main/block/errors';
import type { OptionSpec } from '../../src-shared/options';

test('splitOptionString: pairs, bare names, doubled commas, empty values', () => {
  assert.deepEqual(splitOptionString('a=b,c=d'), [['a', 'b'], ['c', 'd']]);
  assert.deepEqual(splitOptionString('lazy_refcounts'), [['lazy_refcounts', undefined]]);
  assert.deepEqual(splitOptionString('backing_file=a,,b.img,size=1M'), [['backing_file', 'a,b.img'], ['size', '1M']]);
  assert.deepEqual(splitOptionString('x='), [['x', '']]);
  assert.deepEqual(splitOptionString('k=v=w'), [['k', 'v=w']]);
  assert.deepEqual(splitOptionString(''), []);
  assert.deepEqual(splitOptionString('a=1,'), [['a', '1']]);
});

const SPECS: OptionSpec[] = [
  { name: 'cluster_size', type: 'size', description: 'c', min: 512, max: 2 * 1024 * 1024, powerOfTwo: true },
  { name: 'lazy_refcounts', type: 'boolean', description: 'l' },
  { name: 'refcount_bits', type: 'number', description: 'r', choices: [1, 2, 4, 8, 16, 32, 64] },
  { name: 'level', type: 'number', description: 'n', min: 0, max: 9 },
  { name: 'subformat', type: 'enum', description: 's', choices: ['dynamic', 'fixed'] },
  { name: 'comment', type: 'string', description: 't' },
];

const einval = (e: unknown) => e instanceof DiskError && e.code === 'EINVAL';

test('validateOptions converts CLI strings and accepts typed values from the UI', () => {
  assert.deepEqual(
    validateOptions('fmt', SPECS, { cluster_size: '64k', lazy_refcounts: 'on', refcount_bits: '16', subformat: 'fixed', comment: 'hi', level: '0' }),
    { cluster_size: 65536, lazy_refcounts: true, refcount_bits: 16, subformat: 'fixed', comment: 'hi', level: 0 },
  );
  assert.deepEqual(validateOptions('fmt', SPECS, { cluster_size: 4096, lazy_refcounts: false, refcount_bits: 1 }), { cluster_size: 4096, lazy_refcounts: false, refcount_bits: 1 });
  assert.deepEqual(validateOptions('fmt', SPECS, { comment: undefined }), {});
  for (const off of ['off', 'false', 'no', '0']) assert.equal(validateOptions('f', SPECS, { lazy_refcounts: off }).lazy_refcounts, false);
});

test('validateOptions refuses unknown names and bad values with EINVAL naming the problem', () => {
  const bad: Array<[Record<string, string | number | boolean>, RegExp]> = [
    [{ colour: 'blue' }, /has no option 'colour'.*cluster_size/],
    [{ cluster_size: '256' }, /at least 512/],
    [{ cluster_size: '4M' }, /at most/],
    [{ cluster_size: '3k' }, /power of two/],
    [{ cluster_size: 'big' }, /invalid/],
    [{ lazy_refcounts: 'maybe' }, /'on' or 'off'/],
    [{ refcount_bits: '3' }, /one of 1, 2, 4/],
    [{ refcount_bits: '1.5' }, /whole number/],
    [{ level: '10' }, /at most 9/],
    [{ level: '-1' }, /at least 0/],
    [{ subformat: 'sparse' }, /one of dynamic, fixed/],
  ];
  for (const [given, re] of bad) {
    assert.throws(() => validateOptions('fmt', SPECS, given), (e: unknown) => einval(e) && re.test((e as Error).message), JSON.stringify(given));
  }
  assert.throws(() => validateOptions('raw', [], { x: '1' }), /its options: none/);
});

test('describeOptions lists every option with its kind and default', () => {
  const text = describeOptions('fmt', [...SPECS, { name: 'preallocation', type: 'enum', choices: ['off', 'full'], default: 'off', description: 'p' }]);
  assert.match(text, /^Supported fmt options:/);
  assert.match(text, /subformat\s+<dynamic\|fixed>/);
  assert.match(text, /lazy_refcounts\s+<on\|off>/);
  assert.match(text, /preallocation.*\(default: off\)/);
  assert.equal(describeOptions('cow', []), 'cow has no create options.');
});

test('resolveOptions fills the default of every option not given, and keeps what was given', () => {
  const specs: OptionSpec[] = [
    { name: 'cluster_size', type: 'size', description: 'c', default: 65536 },
    { name: 'lazy_refcounts', type: 'boolean', description: 'l', default: false },
    { name: 'subformat', type: 'enum', description: 's', choices: ['dynamic', 'fixed'], default: 'dynamic' },
    { name: 'backing_file', type: 'string', description: 'b' },
  ];
  assert.deepEqual(resolveOptions('fmt', specs, {}), { cluster_size: 65536, lazy_refcounts: false, subformat: 'dynamic' });
  assert.deepEqual(resolveOptions('fmt', specs, { cluster_size: '4k', lazy_refcounts: 'on', backing_file: 'b.img' }), {
    cluster_size: 4096,
    lazy_refcounts: true,
    subformat: 'dynamic',
    backing_file: 'b.img',
  });
  assert.throws(() => resolveOptions('fmt', specs, { subformat: 'sparse' }), einval);
});

test("every driver's defaults pass its own option checks (a default is a value the format's create accepts)", () => {
  for (const name of FORMAT_NAMES) {
    const specs = driverFor(name).createOptions;
    const filled = resolveOptions(name, specs, {});
    assert.deepEqual(validateOptions(name, specs, filled), filled, name);
    for (const s of specs) if (s.default !== undefined) assert.equal(filled[s.name], s.default, `${name} ${s.name}`);
  }
});
