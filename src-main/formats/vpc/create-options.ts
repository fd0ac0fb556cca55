/** vpc create options: ONE list for `create -o` parsing and help, validation and the wizards' forms (light to load). */
import type { OptionSpec } from '../../../src-shared/options';

export const VPC_CREATE_OPTIONS: OptionSpec[] = [
  { name: 'subformat', type: 'enum', choices: ['dynamic', 'fixed'], default: 'dynamic', description: 'dynamic grows as written; fixed is the whole disk followed by the footer (what Azure takes)' },
  {
    name: 'force_size',
    type: 'boolean',
    default: false,
    description: 'Keep the size exactly as given instead of rounding it up to a CHS geometry (readers then use the footer\'s current size; Virtual PC cannot use such an image)',
  },
  { name: 'backing_file', type: 'string', description: 'Parent image (a VHD) of a differencing image' },
  { name: 'backing_fmt', type: 'string', description: 'Image format of the parent (vpc)' },
];
