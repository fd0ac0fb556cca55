/**
 * Reading a create option's value with its OptionSpec's default: the services fill defaults in before a
 * driver sees the values, and a driver called directly (tests, measure from another path) may get none, so
 * each format's settings decoder reads through here and the default is written once, in the OptionSpec.
 */
import type { OptionSpec, OptionValues } from '../../src-shared/options';

/** The value given for `name`, else its spec's default (undefined when neither: an option without a default). */
export function optionValue(specs: readonly OptionSpec[], values: OptionValues, name: string): string | number | boolean | undefined {
  const given = values[name];
  if (given !== undefined) return given;
  const spec = specs.find((s) => s.name === name);
  if (!spec) throw new Error(`no create option named ${name}`);
  return spec.default;
}

/** optionValue as a number (the spec must give a default). */
export function numberOption(specs: readonly OptionSpec[], values: OptionValues, name: string): number {
  return Number(optionValue(specs, values, name));
}

/** optionValue as text (the spec must give a default). */
export function stringOption(specs: readonly OptionSpec[], values: OptionValues, name: string): string {
  return String(optionValue(specs, values, name));
}

/** optionValue as a switch: true, or 'on' as `-o` may spell it. */
export function booleanOption(specs: readonly OptionSpec[], values: OptionValues, name: string): boolean {
  const v = optionValue(specs, values, name);
  return v === true || v === 'on';
}
