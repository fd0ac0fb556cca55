import { computed, type Ref } from 'vue';
import type { OptionSpec } from '../src-shared/api';
import { formatBytes } from './text';
import { parseSizeText } from './sizes';

/** Options a wizard asks for itself (the New Image wizard's backing file step; encryption, EncryptionChoice.vue), whatever the format. */
export const WIZARD_OWNED_OPTIONS = ['backing_file', 'backing_fmt', 'encrypt.format'];

/** qcow2's encryption settings (encrypt.cipher-alg, encrypt.iter-time…), which EncryptionChoice.vue shows. */
export function isEncryptOption(name: string): boolean {
  return name.startsWith('encrypt.');
}

/**
 * A format's create options as a form: which fields show (basic, folded as advanced), what each shows, and
 * the typed values or a sentence per field saying what is wrong. `values` holds only what the user changed;
 * the main side validates again with the same schema.
 */
export function useOptionForm(specs: Ref<OptionSpec[]>, values: Ref<Record<string, string | number | boolean>>) {
  const shown = computed(() => specs.value.filter((s) => !s.hidden && !WIZARD_OWNED_OPTIONS.includes(s.name)));

  function valueOf(spec: OptionSpec): string | number | boolean {
    const v = values.value[spec.name];
    if (v !== undefined) return v;
    if (spec.type === 'boolean') return spec.default ?? false;
    if (spec.type === 'size') return spec.default !== undefined ? formatBytes(spec.default).replace(/ bytes?$/, '').replace(/ ([KMGT])iB$/, '$1') : '';
    return spec.default ?? '';
  }

  function setValue(spec: OptionSpec, v: string | number | boolean): void {
    values.value = { ...values.value, [spec.name]: v };
  }

  function parsed(spec: OptionSpec): { value?: string | number | boolean; error?: string } {
    const raw = values.value[spec.name];
    if (raw === undefined || raw === '') return {};
    switch (spec.type) {
      case 'boolean':
        return { value: Boolean(raw) };
      case 'size': {
        const n = typeof raw === 'number' ? raw : parseSizeText(String(raw));
        if (typeof n === 'string') return { error: n };
        if (spec.min !== undefined && n < spec.min) return { error: `At least ${formatBytes(spec.min)}.` };
        if (spec.max !== undefined && n > spec.max) return { error: `At most ${formatBytes(spec.max)}.` };
        if (spec.powerOfTwo && (n & (n - 1)) !== 0) return { error: 'A power of two: 512, 4k, 64k, 1M…' };
        return { value: n };
      }
      case 'number': {
        const n = Number(raw);
        if (!Number.isInteger(n)) return { error: 'A whole number.' };
        if (spec.choices && !spec.choices.includes(n)) return { error: `One of ${spec.choices.join(', ')}.` };
        if (spec.min !== undefined && n < spec.min) return { error: `At least ${spec.min}.` };
        if (spec.max !== undefined && n > spec.max) return { error: `At most ${spec.max}.` };
        return { value: n };
      }
      default:
        return { value: String(raw) };
    }
  }

  /** An option's value as a review shows it: sizes in units, on/off for switches. */
  function shownValue(name: string, v: string | number | boolean): string {
    const spec = specs.value.find((s) => s.name === name);
    if (spec?.type === 'size' && typeof v === 'number') return formatBytes(v);
    if (typeof v === 'boolean') return v ? 'on' : 'off';
    return String(v);
  }

  return {
    basic: computed(() => shown.value.filter((s) => !s.advanced && !isEncryptOption(s.name))),
    advanced: computed(() => shown.value.filter((s) => s.advanced && !isEncryptOption(s.name))),
    /** qcow2's encrypt.* settings (cipher, iter-time…): drawn by EncryptionChoice, only when encrypting. */
    encryption: computed(() => shown.value.filter((s) => isEncryptOption(s.name))),
    errors: computed(() => shown.value.filter((s) => parsed(s).error)),
    options: computed(() => {
      const out: Record<string, string | number | boolean> = {};
      for (const s of shown.value) {
        const p = parsed(s);
        if (p.value !== undefined) out[s.name] = p.value;
      }
      return out;
    }),
    valueOf,
    setValue,
    parsed,
    shownValue,
  };
}

export type OptionForm = ReturnType<typeof useOptionForm>;
