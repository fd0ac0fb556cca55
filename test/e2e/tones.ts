/**
 * Which of the design tokens' tones a box is painted in (tokens.css): its background compared with the colour
 * each tone's "soft" token resolves to in the page now (so in either theme).
 */
import type { Page } from 'playwright';

export type Tone = 'info' | 'warn' | 'ok' | 'danger' | 'other';

/** The tone of the first element matching `selector` (a CSS selector). */
export async function toneOf(page: Page, selector: string): Promise<Tone> {
  // Given as text: the test runner's TypeScript transform adds helpers (__name) that the page does not have.
  return (await page.evaluate(`(() => {
    const el = document.querySelector(${JSON.stringify(selector)});
    if (!el) throw new Error('no element matches ' + ${JSON.stringify(selector)});
    const probe = document.createElement('div');
    document.body.appendChild(probe);
    const colour = (token) => { probe.style.background = 'var(--' + token + ')'; return getComputedStyle(probe).backgroundColor; };
    const tones = { info: colour('info-soft'), warn: colour('warn-soft'), ok: colour('ok-soft'), danger: colour('danger-soft') };
    probe.remove();
    const bg = getComputedStyle(el).backgroundColor;
    return Object.keys(tones).find((t) => tones[t] === bg) || 'other';
  })()`)) as Tone;
}
