/**
 * The records commit's identity handover leaves in an overlay while it runs (services/commit.ts): each accepts
 * the base's identity from before the commit and the one it plans, and nothing else.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { commitMarkOf, markAccepts, withCommitMark } from '../../src-main/formats/cow/commit-mark';
import { parseHeader, serializeHeader } from '../../src-main/formats/cow/layout';
import { withDdb, withParent } from '../../src-main/formats/vmdk/descriptor';
import { parseDescriptor, PARENT_CID_BEFORE_COMMIT } from '../../src-main/formats/vmdk/layout';
import { staleCids } from '../../src-main/formats/vmdk/open';

const TEXT = [
  '# Disk DescriptorFile',
  'version=1',
  'CID=1a2b3c4d',
  'parentCID=aaaa0001',
  'createType="monolithicSparse"',
  'parentFileNameHint="base.vmdk"',
  '',
  'RW 8192 SPARSE "ov.vmdk"',
  '',
  'ddb.virtualHWVersion = "4"',
  '',
].join('\n');

test('VMDK: during the handover the parent is accepted with its next CID or its old one, and no other', () => {
  const during = withDdb(withParent(TEXT, 'base.vmdk', 0xbbbb0002), PARENT_CID_BEFORE_COMMIT, 'aaaa0001');
  const d = parseDescriptor(during, 'ov.vmdk');
  assert.equal(d.parentCid, 0xbbbb0002);
  assert.equal(staleCids(d, 0xbbbb0002), false);
  assert.equal(staleCids(d, 0xaaaa0001), false);
  assert.equal(staleCids(d, 0xcccc0003), true);
  // qemu finds the lines by substring: the key must not hold "CID" or "parentCID".
  assert.ok(!PARENT_CID_BEFORE_COMMIT.includes('CID'));
  assert.ok(during.indexOf('CID=1a2b3c4d') < during.indexOf(PARENT_CID_BEFORE_COMMIT));
  // Ended: the key is gone, every other line as it was, and only the new CID passes.
  const ended = withDdb(during, PARENT_CID_BEFORE_COMMIT, undefined);
  assert.equal(ended, withParent(TEXT, 'base.vmdk', 0xbbbb0002));
  const e = parseDescriptor(ended, 'ov.vmdk');
  assert.equal(staleCids(e, 0xaaaa0001), true);
  assert.equal(staleCids(e, 0xbbbb0002), false);
  // Without the key, today's rule: the recorded parentCID only.
  assert.equal(staleCids(parseDescriptor(TEXT, 'ov.vmdk'), 0xbbbb0002), true);
});

test('COW: the mark sits after the name, reads back, and accepts the old mtime or one from the start on', () => {
  const bytes = serializeHeader({ layout: 'v3', littleEndian: false, backingFile: '/images/base.raw', mtime: 2000, size: 1 << 20, sectorSize: 512, alignment: 512, cowFormat: 0 });
  const h = parseHeader(bytes, 'ov.cow', 1 << 22);
  assert.equal(commitMarkOf(bytes, h), undefined);
  const marked = withCommitMark(bytes, h, { previousMtime: 1000, since: 1500 });
  const again = parseHeader(marked, 'ov.cow', 1 << 22);
  assert.equal(again.backingFile, '/images/base.raw', 'the name reads as before');
  const mark = commitMarkOf(marked, again)!;
  assert.deepEqual(mark, { previousMtime: 1000, since: 1500 });
  assert.equal(markAccepts(mark, 1000), true);
  assert.equal(markAccepts(mark, 1700), true);
  assert.equal(markAccepts(mark, 1200), false, 'an mtime before the commit began, not the old one');
  assert.equal(commitMarkOf(withCommitMark(marked, again, undefined), again), undefined);
  assert.ok(Buffer.from(withCommitMark(marked, again, undefined)).equals(Buffer.from(bytes)), 'cleared: the header as uml_mkcow wrote it');
});
