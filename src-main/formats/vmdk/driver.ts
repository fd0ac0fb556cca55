/**
 * The VMDK driver: wiring of probe, describe (describe.ts), open (open.ts + device.ts, or the stream writer of
 * stream.ts for a freshly created streamOptimized file opened for writing), create (create.ts), check (check.ts).
 * Only the probe and the option list are loaded with it; the rest on first use (`await import`), so other
 * formats' commands do not compile it.
 */
import type { BlockDevice, CreatedFiles, CreateOptions, FormatDriver, OpenOptions } from '../../block/types';
import { VMDK_CREATE_OPTIONS } from './create-options';
import { looksLikeDescriptor, probeVmdk } from './layout';
import { ImageFile } from '../../block/file';

async function open(path: string, opts: OpenOptions): Promise<BlockDevice> {
  const [{ openParent, openVmdk }, { SparseExtent }, { VmdkDevice }] = await Promise.all([import('./open'), import('./extent'), import('./device')]);
  const o = await openVmdk(path, !opts.readOnly, opts.backingPolicy);
  let parent: BlockDevice | undefined;
  try {
    parent = await openParent(path, o.descriptor, opts);
  } catch (err) {
    for (const f of o.files) await f.close();
    throw err;
  }
  const only = o.extents.length === 1 ? o.extents[0] : undefined;
  if (!opts.readOnly && only instanceof SparseExtent && o.files.length === 1) {
    const { StreamWriter, isEmptyStream } = await import('./stream');
    if (isEmptyStream(only.facts, only.directory)) return new StreamWriter(path, only.file, only.facts.header!, o.size, parent);
  }
  return new VmdkDevice(path, o.size, opts.readOnly, o.extents, o.files, o.descriptor, o.place, parent);
}

export const vmdkDriver: FormatDriver = {
  name: 'vmdk',
  label: 'VMDK',
  description: 'VMware disk: Workstation, Fusion, ESXi, VirtualBox',
  extensions: ['vmdk'],
  preload: async () => {
    await Promise.all([import('./open'), import('./extent'), import('./device'), import('./describe')]);
  },
  // The devices would take overlapping calls (their mutations queue in call order: block/mutation-queue.ts), but
  // convert measured no faster with them (the bench rows are I/O and start-up bound), so callers keep to one
  // call at a time.
  concurrentCalls: false,
  backingFiles: 'optional',
  probe: (head) => probeVmdk(head),
  describe: async (file) => (await import('./describe')).describeVmdk(file),
  measure: async (size, opts, data) => (await import('./measure')).measureVmdk(size, opts, data),
  createOptions: VMDK_CREATE_OPTIONS,
  open,
  // create.ts is loaded when an image is made: listing the options needs only create-options.ts.
  async create(path: string, size: number, opts: CreateOptions): Promise<void | CreatedFiles> {
    return (await import('./create')).createVmdk(path, size, opts);
  },
  check: async (path, repair, opts) => (await import('./check')).checkVmdk(path, repair, opts),
  // A text descriptor names its extents in other files; a monolithic sparse file embeds its descriptor.
  async spansFiles(path: string): Promise<boolean> {
    const file = await ImageFile.open(path, false);
    try {
      const head = new Uint8Array(Math.min(1024, file.size));
      await file.readExact(0, head, 'header');
      return looksLikeDescriptor(head);
    } finally {
      await file.close();
    }
  },
};
