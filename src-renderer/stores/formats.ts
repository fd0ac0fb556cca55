/**
 * The formats this build knows, as their drivers describe them (label, what each is for, extensions, what
 * it can do). Loaded once; the UI keeps no list of its own, so a new driver shows up without UI code.
 */
import { defineStore } from 'pinia';
import type { FormatSummary } from '../../src-shared/api';
import { api } from '../api';

export const useFormatsStore = defineStore('formats', {
  state: () => ({
    list: [] as FormatSummary[],
    loading: null as Promise<void> | null,
  }),
  getters: {
    /** "QCOW2" for 'qcow2'; the name itself until the list has arrived. */
    label: (state) => (name: string) => state.list.find((f) => f.name === name)?.label ?? name,
    byName: (state) => (name: string) => state.list.find((f) => f.name === name),
  },
  actions: {
    load(): Promise<void> {
      this.loading ??= api.formats().then(
        (list) => {
          this.list = list;
        },
        () => {
          // Labels fall back to format names; the next call tries again.
          this.loading = null;
        },
      );
      return this.loading;
    },
  },
});
