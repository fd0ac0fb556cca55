/** cow create options: ONE list for `create -o` parsing and help, validation and the wizards' forms (light to load: the driver lists it at start-up, create.ts is loaded only to create). */
import type { OptionSpec } from '../../../src-shared/options';

export const COW_CREATE_OPTIONS: OptionSpec[] = [
  { name: 'version', type: 'enum', choices: ['3', '2'], default: '3', description: 'Header version: 3 as uml_mkcow writes it, or 2 for old UML kernels' },
];
