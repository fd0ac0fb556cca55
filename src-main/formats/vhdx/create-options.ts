/** vhdx create options: ONE list for `create -o` parsing and help, validation and the wizards' forms (light to load: the driver lists it at start-up, create.ts is loaded only to create). */
import type { OptionSpec } from '../../../src-shared/options';
import { BLOCK_SIZE_MAX, MiB } from './layout';

export const VHDX_CREATE_OPTIONS: OptionSpec[] = [
  { name: 'subformat', type: 'enum', choices: ['dynamic', 'fixed'], default: 'dynamic', description: 'dynamic grows as written; fixed allocates every block up front' },
  {
    name: 'block_size',
    type: 'size',
    min: 0,
    max: BLOCK_SIZE_MAX,
    default: 0,
    description: 'Block size, the unit of allocation: a power of two from 1 MiB to 256 MiB (0 chooses by the disk size: 8 to 64 MiB)',
  },
  { name: 'log_size', advanced: true, type: 'size', min: MiB, default: MiB, description: 'Size of the metadata log, rounded up to whole MiB (at least 1 MiB)' },
  {
    name: 'block_state_zero',
    advanced: true,
    type: 'boolean',
    default: true,
    description: 'Mark the blocks of a dynamic image as zero rather than not present (qemu\'s default; off leaves them not present)',
  },
  { name: 'logical_sector_size', advanced: true, type: 'number', choices: [512, 4096], default: 512, description: 'Logical sector size the guest sees: 512 or 4096 bytes' },
  { name: 'backing_file', type: 'string', description: 'Parent image (a VHDX) of a differencing image' },
  { name: 'backing_fmt', type: 'string', description: 'Image format of the parent (vhdx)' },
];
