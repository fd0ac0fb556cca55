/**
 * A format's create option, described once: the CLI parses `-o` with it, the services validate with it,
 * and the New Image wizard renders a form field from it.
 */
export type OptionSpec = OptionCommon &
  (
    | { type: 'boolean'; default?: boolean }
    | { type: 'size'; default?: number; min?: number; max?: number; powerOfTwo?: boolean }
    | { type: 'number'; default?: number; min?: number; max?: number; choices?: number[] }
    | { type: 'enum'; default?: string; choices: string[] }
    | { type: 'string'; default?: string }
  );

interface OptionCommon {
  name: string;
  description: string;
  /** Folded away under "Advanced" in the wizard: most people never need it. */
  advanced?: boolean;
  /** Not shown in the wizard at all (set by the wizard itself, like backing_file, or meaningless there). */
  hidden?: boolean;
}

export type OptionValues = Record<string, string | number | boolean>;
