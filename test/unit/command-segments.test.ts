/** The renderer's cut of a message around the commands it names, which the face keeps on one line. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { commandSegments } from '../../src-renderer/text';

test('commandSegments: a command with its options is one segment; the words around it are text; the parts make the message again', () => {
  const msg = 'ESXi imports streamOptimized (OVF/OVA) or clones monolithicSparse (vmkfstools -i); this VMDK is twoGbMaxExtentSparse';
  const parts = commandSegments(msg);
  assert.deepEqual(parts.filter((p) => p.command).map((p) => p.text), ['vmkfstools -i']);
  assert.equal(parts.map((p) => p.text).join(''), msg);
  assert.deepEqual(commandSegments('run qemu-img convert -O vhdx -o subformat=fixed first').filter((p) => p.command).map((p) => p.text), ['convert -O', 'vhdx -o']);
  // Hyphenated words and a dash between words are no options.
  assert.deepEqual(commandSegments('a well-known image - nothing to do').filter((p) => p.command), []);
  assert.deepEqual(commandSegments(''), []);
});
