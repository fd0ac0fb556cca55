/** vmdk create options: ONE list for `create -o` parsing and help, validation and the wizards' forms (light to load: the driver lists it at start-up, create.ts is loaded only to create). */
import type { OptionSpec } from '../../../src-shared/options';

export const SUBFORMATS = ['monolithicSparse', 'monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat', 'streamOptimized'] as const;
export const ADAPTER_TYPES = ['ide', 'buslogic', 'lsilogic', 'legacyESX'];

export const VMDK_CREATE_OPTIONS: OptionSpec[] = [
  {
    name: 'subformat',
    type: 'enum',
    choices: [...SUBFORMATS],
    default: 'monolithicSparse',
    description: 'Layout: monolithicSparse (one growing file), monolithicFlat (descriptor + one full-size file), twoGbMaxExtent* (split in 2 GiB files), streamOptimized (compressed, for OVA/OVF)',
  },
  { name: 'adapter_type', type: 'enum', choices: ADAPTER_TYPES, default: 'ide', description: 'Virtual adapter type: ide (default), lsilogic, buslogic or legacyESX' },
  { name: 'hwversion', advanced: true, type: 'string', description: 'VMDK hardware version (ddb.virtualHWVersion); default 4, or 6 with compat6' },
  { name: 'toolsversion', advanced: true, type: 'string', description: 'VMware guest tools version (ddb.toolsVersion); default 2147483647' },
  { name: 'compat6', advanced: true, type: 'boolean', default: false, description: 'VMDK version 6 image (hardware version 6)' },
  { name: 'zeroed_grain', advanced: true, type: 'boolean', default: false, description: 'Enable efficient zero writes using the zeroed-grain table entry (sparse subformats)' },
  { name: 'backing_file', type: 'string', description: 'File name of a base image (a VMDK)' },
  { name: 'backing_fmt', type: 'string', description: "Image format of the base image: must be 'vmdk' if present" },
];
