/** The format names of the contract (each a driver's name in src-main/formats/index.ts; the registry checks). */
export type FormatName = 'raw' | 'qcow2' | 'vmdk' | 'vhdx' | 'vpc' | 'parallels' | 'cow' | 'vdi';
export const FORMAT_NAMES: readonly FormatName[] = ['raw', 'qcow2', 'vmdk', 'vhdx', 'vpc', 'parallels', 'cow', 'vdi'];
