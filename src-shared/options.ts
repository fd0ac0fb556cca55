/**
 * A format's create option, described once: the CLI parses `-o` with it, the services validate with it,
 * and the New Image wizard renders a form field from it.
 */
export type OptionSpec =
  | { name: string; type: 'boolean'; description: string; default?: boolean }
  | { name: string; type: 'size'; description: string; default?: number; min?: number; max?: number; powerOfTwo?: boolean }
  | { name: string; type: 'number'; description: string; default?: number; min?: number; max?: number; choices?: number[] }
  | { name: string; type: 'enum'; description: string; default?: string; choices: string[] }
  | { name: string; type: 'string'; description: string; default?: string };

export type OptionValues = Record<string, string | number | boolean>;
