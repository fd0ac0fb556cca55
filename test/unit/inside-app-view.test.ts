/**
 * The app's file browser order and the partition type names of the Partitions card: every name held to sfdisk's
 * own list (`sfdisk --label gpt|dos -T`, the oracle), and folders first under every sort.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { InsideEntry } from '../../src-shared/api';
import { joinInner, sortEntries } from '../../src-renderer/components/inside/entries';
import { NAMED_TYPES, partitionTypeName } from '../../src-renderer/components/inside/partitionTypes';
import { must } from '../helpers';

function sfdiskTypes(label: 'gpt' | 'dos'): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of must('sfdisk', ['--label', label, '-T']).stdout.split('\n')) {
    const m = /^\s*([0-9A-Fa-f-]+)\s{2,}(.+)$/.exec(line);
    if (m && m[1] !== 'Id') out.set(m[1].toLowerCase(), m[2].trim());
  }
  return out;
}

test('every GPT and MBR type name is the name sfdisk gives it', () => {
  const gpt = sfdiskTypes('gpt');
  const dos = sfdiskTypes('dos');
  assert.ok(gpt.size > 50 && dos.size > 50, 'sfdisk listed its types');
  for (const [guid, name] of Object.entries(NAMED_TYPES.gpt)) assert.equal(name, gpt.get(guid.toLowerCase()), guid);
  for (const [code, name] of Object.entries(NAMED_TYPES.mbr)) assert.equal(name, dos.get(code), code);
  // Looked up as the reader reports types: GPT upper-case, MBR as sfdisk prints the byte.
  assert.equal(partitionTypeName('gpt', '0fc63daf-8483-4772-8e79-3d69d8477de4'), 'Linux filesystem');
  assert.equal(partitionTypeName('mbr', 'c'), 'W95 FAT32 (LBA)');
  assert.equal(partitionTypeName('mbr', '0c'), 'W95 FAT32 (LBA)');
  assert.equal(partitionTypeName('mbr', '42'), undefined);
  assert.equal(partitionTypeName(null, '83'), undefined);
});

test('folders come first under every sort; names read as a person reads them', () => {
  const e = (name: string, type: InsideEntry['type'], size: number, mtime?: number): InsideEntry => ({ name, type, size, ...(mtime !== undefined ? { mtime } : {}) });
  const list = [e('b.txt', 'file', 30, 3), e('Zeta', 'dir', 4096, 1), e('a10.txt', 'file', 10, 2), e('a9.txt', 'file', 20, 5), e('alpha', 'dir', 1024, 9), e('link', 'symlink', 5, 4)];
  const names = (k: 'name' | 'size' | 'mtime', up: boolean) => sortEntries(list, k, up).map((x) => x.name);
  assert.deepEqual(names('name', true), ['alpha', 'Zeta', 'a9.txt', 'a10.txt', 'b.txt', 'link']);
  assert.deepEqual(names('name', false), ['Zeta', 'alpha', 'link', 'b.txt', 'a10.txt', 'a9.txt']);
  assert.deepEqual(names('size', true), ['alpha', 'Zeta', 'link', 'a10.txt', 'a9.txt', 'b.txt']);
  assert.deepEqual(names('mtime', false), ['alpha', 'Zeta', 'a9.txt', 'link', 'b.txt', 'a10.txt']);
  assert.deepEqual(list[0].name, 'b.txt', 'the listing itself is left as it was');
  assert.equal(joinInner('/', 'etc'), '/etc');
  assert.equal(joinInner('/etc', 'hosts'), '/etc/hosts');
});
