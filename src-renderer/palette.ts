/**
 * The maps' colours, read from the design tokens (tokens.css) so that the canvas drawings follow the theme like
 * the rest of the page. `colourScheme` changes when the system switches between light and dark, so a map can
 * redraw with the new colours.
 */
import { ref } from 'vue';

const query = typeof window !== 'undefined' && window.matchMedia ? window.matchMedia('(prefers-color-scheme: dark)') : undefined;

/** 'light' or 'dark', as the system asks now. */
export const colourScheme = ref<'light' | 'dark'>(query?.matches ? 'dark' : 'light');
query?.addEventListener('change', (e) => {
  colourScheme.value = e.matches ? 'dark' : 'light';
});

/** The value of each named token (without its leading "--"), as the page resolves it now. */
export function readPalette<K extends string>(tokens: Record<K, string>): Record<K, string> {
  const style = getComputedStyle(document.documentElement);
  const out = {} as Record<K, string>;
  for (const key of Object.keys(tokens) as K[]) out[key] = style.getPropertyValue(`--${tokens[key]}`).trim();
  return out;
}
