/**
 * Create options (`-o a=b,c=d` on the command line, a form in the app) read against a format's OptionSpec list:
 * qemu-img's option syntax, validation with plain messages, the defaults filled in, and the `-o help` text. The
 * one place a spec's `default` becomes a value: a format's create and measure receive every option that has a
 * default already set.
 */
import type { OptionSpec, OptionValues } from '../../src-shared/options';
import { DiskError } from '../block/errors';
import { parseSize } from '../block/sizes';

/** Splits qemu-img's `-o a=b,c=d` syntax; a doubled comma is a literal comma. */
export function splitOptionString(text: string): Array<[string, string | undefined]> {
  const out: Array<[string, string | undefined]> = [];
  let cur = '';
  for (let i = 0; i < text.length; i++) {
    if (text[i] === ',' && text[i + 1] === ',') {
      cur += ',';
      i++;
    } else if (text[i] === ',') {
      out.push(splitPair(cur));
      cur = '';
    } else cur += text[i];
  }
  if (cur !== '') out.push(splitPair(cur));
  return out;
}

function splitPair(s: string): [string, string | undefined] {
  const eq = s.indexOf('=');
  return eq < 0 ? [s, undefined] : [s.slice(0, eq), s.slice(eq + 1)];
}

function parseBool(name: string, v: string): boolean {
  if (['on', 'true', 'yes', '1'].includes(v)) return true;
  if (['off', 'false', 'no', '0'].includes(v)) return false;
  throw new DiskError('EINVAL', `option ${name} expects 'on' or 'off', not '${v}'`);
}

/**
 * Checks values against a format's option schema (strings from the CLI or typed values from the app) and fills
 * in the default of every option not given that has one.
 */
export function resolveOptions(format: string, specs: OptionSpec[], given: Record<string, string | number | boolean | undefined>): OptionValues {
  const out = validateOptions(format, specs, given);
  for (const spec of specs) if (out[spec.name] === undefined && spec.default !== undefined) out[spec.name] = spec.default;
  return out;
}

/** Checks values against a format's option schema; accepts strings (CLI) or typed values (UI). Fills no defaults. */
export function validateOptions(format: string, specs: OptionSpec[], given: Record<string, string | number | boolean | undefined>): OptionValues {
  const out: OptionValues = {};
  for (const [name, raw] of Object.entries(given)) {
    if (raw === undefined) continue;
    const spec = specs.find((s) => s.name === name);
    if (!spec) {
      const known = specs.map((s) => s.name).join(', ') || 'none';
      throw new DiskError('EINVAL', `${format} has no option '${name}' (its options: ${known})`);
    }
    const text = String(raw);
    switch (spec.type) {
      case 'boolean':
        out[name] = typeof raw === 'boolean' ? raw : parseBool(name, text);
        break;
      case 'size': {
        const n = typeof raw === 'number' ? raw : parseSize(text, name);
        if (spec.min !== undefined && n < spec.min) throw new DiskError('EINVAL', `${name} must be at least ${spec.min}`);
        if (spec.max !== undefined && n > spec.max) throw new DiskError('EINVAL', `${name} must be at most ${spec.max}`);
        if (spec.powerOfTwo && (n & (n - 1)) !== 0) throw new DiskError('EINVAL', `${name} must be a power of two`);
        out[name] = n;
        break;
      }
      case 'number': {
        const n = typeof raw === 'number' ? raw : Number(text);
        if (!Number.isInteger(n)) throw new DiskError('EINVAL', `${name} must be a whole number, not '${text}'`);
        if (spec.choices && !spec.choices.includes(n)) throw new DiskError('EINVAL', `${name} must be one of ${spec.choices.join(', ')}`);
        if (spec.min !== undefined && n < spec.min) throw new DiskError('EINVAL', `${name} must be at least ${spec.min}`);
        if (spec.max !== undefined && n > spec.max) throw new DiskError('EINVAL', `${name} must be at most ${spec.max}`);
        out[name] = n;
        break;
      }
      case 'enum':
        if (!spec.choices.includes(text)) throw new DiskError('EINVAL', `${name} must be one of ${spec.choices.join(', ')}, not '${text}'`);
        out[name] = text;
        break;
      case 'string':
        out[name] = text;
        break;
    }
  }
  return out;
}

/** The `-o help` text. */
export function describeOptions(format: string, specs: OptionSpec[]): string {
  if (specs.length === 0) return `${format} has no create options.`;
  const lines = [`Supported ${format} options:`];
  for (const s of specs) {
    const kind = s.type === 'enum' ? s.choices.join('|') : s.type === 'number' && s.choices ? s.choices.join('|') : s.type === 'boolean' ? 'on|off' : s.type;
    const def = s.default !== undefined ? ` (default: ${s.default})` : '';
    lines.push(`  ${s.name.padEnd(22)} <${kind}> - ${s.description}${def}`);
  }
  return lines.join('\n');
}
