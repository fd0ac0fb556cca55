/** The command line's flags read the way qemu-img reads them (getopt style), with plain errors for bad ones. */
import { DiskError } from '../block/errors';

export interface FlagSpec {
  /** Flags that take a value, e.g. ['-f', '-O', '--output']. */
  withValue: string[];
  /** Flags that stand alone, e.g. ['-c', '-p', '--shrink']. */
  boolean: string[];
}

export interface ParsedArgs {
  flags: Map<string, string[]>;
  positional: string[];
}

/** A small getopt: "-f qcow2", "-fqcow2", "--output=json", "--output json", "--" ends flags. Repeats accumulate. */
export function parseArgs(argv: string[], spec: FlagSpec, command: string): ParsedArgs {
  const flags = new Map<string, string[]>();
  const positional: string[] = [];
  const add = (k: string, v: string) => flags.set(k, [...(flags.get(k) ?? []), v]);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a : a.slice(0, eq);
      if (spec.boolean.includes(name)) {
        if (eq >= 0) throw new DiskError('EINVAL', `${command}: option ${name} takes no value`);
        add(name, '');
      } else if (spec.withValue.includes(name)) {
        const v = eq >= 0 ? a.slice(eq + 1) : argv[++i];
        if (v === undefined) throw new DiskError('EINVAL', `${command}: option ${name} needs a value`);
        add(name, v);
      } else throw new DiskError('EINVAL', `${command}: unknown option ${name}`);
    } else if (a.startsWith('-') && a.length > 1 && !/^-\d/.test(a)) {
      // Bundled short flags: "-pc", "-fqcow2".
      for (let j = 1; j < a.length; j++) {
        const name = '-' + a[j];
        if (spec.boolean.includes(name)) {
          add(name, '');
        } else if (spec.withValue.includes(name)) {
          const rest = a.slice(j + 1);
          const v = rest.length ? rest : argv[++i];
          if (v === undefined) throw new DiskError('EINVAL', `${command}: option ${name} needs a value`);
          add(name, v);
          break;
        } else throw new DiskError('EINVAL', `${command}: unknown option ${name}`);
      }
    } else positional.push(a);
  }
  return { flags, positional };
}

export function last(p: ParsedArgs, name: string): string | undefined {
  const v = p.flags.get(name);
  return v ? v[v.length - 1] : undefined;
}
export function has(p: ParsedArgs, name: string): boolean {
  return p.flags.has(name);
}
