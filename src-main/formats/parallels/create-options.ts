/** parallels create options: ONE list for `create -o` parsing and help, validation and the wizards' forms (light to load: the driver lists it at start-up, create.ts is loaded only to create). */
import type { OptionSpec } from '../../../src-shared/options';
import { DEFAULT_CLUSTER_SIZE } from './layout';

export const PARALLELS_CREATE_OPTIONS: OptionSpec[] = [
  {
    name: 'cluster_size',
    type: 'size',
    min: 512,
    default: DEFAULT_CLUSTER_SIZE,
    description: 'Parallels image cluster size, the unit of allocation (rounded up to 512 bytes; qemu-img accepts up to 2 GiB)',
  },
  {
    name: 'preallocation',
    type: 'enum',
    choices: ['off', 'falloc', 'full'],
    default: 'off',
    description: 'Preallocation of the header and BAT: off leaves the BAT sparse; falloc and full write its zeros (Node has no fallocate, so falloc writes them too)',
  },
];
