/** vdi create options: ONE list for `create -o` parsing and help, validation and the wizards' forms (light to load: the driver lists it at start-up, create.ts is loaded only to create). */
import type { OptionSpec } from '../../../src-shared/options';

export const VDI_CREATE_OPTIONS: OptionSpec[] = [
  { name: 'static', type: 'boolean', default: false, description: 'VDI static (pre-allocated) image: every block has its place in the file from the start (the file is sparse until written)' },
  {
    name: 'preallocation',
    advanced: true,
    type: 'enum',
    choices: ['off', 'falloc', 'full'],
    default: 'off',
    description: 'Accepted as qemu-img accepts it; qemu-img 7.2 leaves a VDI file the same whatever it says (use static for a pre-allocated image)',
  },
];
