/**
 * The VMDK driver: wiring of probe, describe (describe.ts), open (open.ts + device.ts), create (create.ts),
 * streamOptimized output (stream.ts) and check (check.ts).
 */
import type { BlockDevice, FormatDriver, OpenOptions } from '../../block/types';
import { describeVmdk } from './describe';
import { VmdkDevice } from './device';
import { probeVmdk } from './layout';
import { openParent, openVmdk } from './open';

async function open(path: string, opts: OpenOptions): Promise<BlockDevice> {
  const o = await openVmdk(path, !opts.readOnly, opts.backingPolicy);
  let parent: BlockDevice | undefined;
  try {
    parent = await openParent(path, o.descriptor, opts);
  } catch (err) {
    for (const f of o.files) await f.close();
    throw err;
  }
  return new VmdkDevice(path, o.size, opts.readOnly, o.extents, o.files, o.descriptor, o.place, parent);
}

export const vmdkDriver: FormatDriver = {
  name: 'vmdk',
  label: 'VMDK',
  description: 'VMware disk: Workstation, Fusion, ESXi, VirtualBox',
  extensions: ['vmdk'],
  concurrentCalls: false,
  probe: (head) => probeVmdk(head),
  describe: describeVmdk,
  createOptions: [],
  open,
};
