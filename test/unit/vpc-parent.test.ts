/** A differencing VHD's parent names: the locators' texts turned into paths here, in the order they are tried. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parentCandidates } from '../../src-main/formats/vpc/parent';

test('relative names first, then absolute ones; Windows drive letters and UNC paths are skipped; the header name last', () => {
  const c = parentCandidates(
    [
      { code: 'W2ru', text: '.\\dir\\base.vhd' },
      { code: 'W2ku', text: 'C:\\vms\\base.vhd' },
      { code: 'W2ku', text: '\\\\server\\share\\base.vhd' },
      { code: 'MacX', text: 'file:///srv/vms/my%20base.vhd' },
      { code: 'Mac ', text: 'alias blob' },
    ],
    'base.vhd',
  );
  assert.deepEqual(c, ['dir/base.vhd', '/srv/vms/my base.vhd', 'base.vhd']);
});

test('an absolute POSIX path in W2ku is followed; a parent name with a Windows folder gives its file name', () => {
  assert.deepEqual(parentCandidates([{ code: 'W2ku', text: '/tmp/x/base.vhd' }], 'C:\\old\\base.vhd'), ['/tmp/x/base.vhd', 'base.vhd']);
  assert.deepEqual(parentCandidates([], ''), []);
  assert.deepEqual(parentCandidates([{ code: 'MacX', text: 'file://localhost/a%ZZ' }], 'p.vhd'), ['p.vhd'], 'a malformed URL is skipped');
});
