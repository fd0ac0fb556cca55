/** Window-wide state that belongs to no view: a passing notice. */
import { defineStore } from 'pinia';

/** A passing message for the whole window (for example why a dropped file could not be opened). */
export const useUiStore = defineStore('ui', {
  state: () => ({ notice: '' }),
  actions: {
    say(text: string): void {
      this.notice = text;
    },
    dismiss(): void {
      this.notice = '';
    },
  },
});
