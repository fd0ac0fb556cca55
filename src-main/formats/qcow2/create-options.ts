/** qcow2 create options: ONE list for `create -o` parsing and help, validation and the wizards' forms (light to load: the driver lists it at start-up, create.ts is loaded only to create). */
import type { OptionSpec } from '../../../src-shared/options';

export const QCOW2_CREATE_OPTIONS: OptionSpec[] = [
  {
    name: 'compat',
    type: 'enum',
    choices: ['1.1', '0.10', 'v3', 'v2'],
    default: '1.1',
    description: 'Compatibility level: 1.1 (qcow2 version 3: zero clusters, lazy refcounts, any refcount width) or 0.10 (version 2, for very old readers)',
  },
  {
    name: 'cluster_size',
    type: 'size',
    min: 512,
    max: 2 * 1024 * 1024,
    powerOfTwo: true,
    default: 65536,
    description: 'Cluster size, the unit of allocation: a power of two from 512 bytes to 2 MiB',
  },
  {
    name: 'refcount_bits',
    advanced: true,
    type: 'number',
    choices: [1, 2, 4, 8, 16, 32, 64],
    default: 16,
    description: 'Width of a reference count in bits (a power of two, 1 to 64; not 16 requires compat=1.1)',
  },
  { name: 'lazy_refcounts', advanced: true, type: 'boolean', default: false, description: 'Postpone refcount updates while the image is open (compat=1.1 only)' },
  {
    name: 'extended_l2',
    advanced: true,
    type: 'boolean',
    default: false,
    description: 'Extended L2 entries: 32 separately allocated subclusters per cluster (compat=1.1, clusters of 16 KiB or more)',
  },
  {
    name: 'preallocation',
    type: 'enum',
    choices: ['off', 'metadata', 'full'],
    default: 'off',
    description: 'Preallocation mode: off allocates on write, metadata allocates all tables and clusters up front, full also writes zeros to them',
  },
  { name: 'compression_type', advanced: true, type: 'enum', choices: ['zlib'], default: 'zlib', description: 'Compression used for compressed clusters (convert -c)' },
  { name: 'backing_file', type: 'string', description: 'File name of a base image' },
  { name: 'backing_fmt', type: 'string', description: 'Image format of the base image' },
];
