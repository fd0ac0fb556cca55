/**
 * What a person would see as broken on the page now, measured in the page (visible elements only). Shared by
 * the layout audit and any e2e test that wants to check the view it has reached:
 *
 * - a form control or action button taller than 48 px (the 210 px fields of an earlier round);
 * - an element whose content spills out of its box (content wider or taller than the box, and the box neither
 *   scrolls nor clips);
 * - text clipped by its box (overflow hidden or an ellipsis) with no title to read it in full;
 * - a button overlapping another button, a form control or a line of text;
 * - a button touching the text above it or the box below it (less than 4 px between them);
 * - cards (boxes with a border of their own) closer than 8 px to each other, above, below or beside;
 * - a part of a card that fills its width in the flow (a map, a legend, a table, a fieldset) ending short of it:
 *   a block box (not text, not a control) in the normal flow of a box that spans the card, wider than half of
 *   that box's content yet ending more than 16 px before its right edge (the Compact map 90 px short);
 * - titles of one kind side by side in different weights: elements of the same tag and class, holding text,
 *   under one grandparent (the labels of a legend's items, one of them normal and its siblings bold);
 * - the notes of cards (paragraphs in the muted colour: .muted or .help) more than a pixel apart in size on one
 *   page (the Partitions card's "Nothing on this disk was recognised" at 15 px under 12.8 px notes elsewhere);
 * - a format named in a sentence by its internal name ("this one is parallels", "a qcow2 image") where the app's
 *   name (Parallels, QCOW2) belongs: the id after an article, "is", "of", "from", "to" or "into" in text outside
 *   code, a file name or a field's value;
 * - a choice named in words (a hypervisor, "LSI Logic") shown in the monospace font of paths and option values: a
 *   select whose chosen option's text has a space in it, drawn in a monospace font; and a select too narrow for the
 *   choice it shows (reported as clipped text: a select cuts it off with no ellipsis);
 * - a word broken across two lines inside its letters ("Si / ze", "Gi / B": a column too narrow for it), outside
 *   code, monospace and paths, which may break anywhere;
 * - a size rounded to whole units beside its exact bytes as if it were exact ("16 MiB" over "16,781,312 bytes"): in a
 *   stat card or a fact, a whole number of KiB..EiB without "≈" that the bytes beside it are not;
 * - a page that scrolls sideways.
 */
import type { Page } from 'playwright';

export interface LayoutDefect {
  what: 'tall control' | 'overflow' | 'clipped text' | 'overlap' | 'cramped' | 'short of the card' | 'uneven titles' | 'uneven notes' | 'format id in words' | 'words in a code font' | 'broken word' | 'rounded size as exact' | 'sideways scroll';
  detail: string;
}

// Given as text: the test runner's TypeScript transform adds helpers (__name) that the page does not have.
const MEASURE = `(() => {
  const out = [];
  const visible = (el) => {
    const r = el.getBoundingClientRect();
    const st = getComputedStyle(el);
    if (!(r.width > 0 && r.height > 0 && st.visibility !== 'hidden' && st.display !== 'none' && st.opacity !== '0')) return false;
    // Scrolled out of a scrolling box (a long list): clipped away, not on screen.
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const ps = getComputedStyle(p);
      if (ps.overflowX === 'visible' && ps.overflowY === 'visible') continue;
      const pr = p.getBoundingClientRect();
      if (r.bottom <= pr.top || r.top >= pr.bottom || r.right <= pr.left || r.left >= pr.right) return false;
    }
    // The content of a closed <details> still has boxes in Chromium, but nobody sees it.
    for (let d = el.closest('details'); d; d = d.parentElement && d.parentElement.closest('details')) {
      if (!d.open && !el.closest('summary')) return false;
    }
    return true;
  };
  const hiddenForScreenReaders = (el) => el.closest('.visually-hidden') !== null;
  const name = (el) => {
    const t = (el.innerText || el.value || el.getAttribute('aria-label') || '').trim().replace(/\\s+/g, ' ').slice(0, 40);
    return el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\\s+/).join('.') : '') + (t ? ' “' + t + '”' : '');
  };
  const all = Array.from(document.querySelectorAll('body *')).filter((el) => !hiddenForScreenReaders(el) && visible(el));

  for (const el of all) {
    if (!el.matches('input:not([type=checkbox]):not([type=radio]), select, textarea:not([rows]), .button')) continue;
    const h = el.getBoundingClientRect().height;
    if (h > 48) out.push({ what: 'tall control', detail: name(el) + ' is ' + Math.round(h) + ' px tall' });
  }

  for (const el of all) {
    if (el.matches('html, body, canvas, svg, svg *, input, select, textarea, option')) continue;
    const st = getComputedStyle(el);
    const overX = el.scrollWidth - el.clientWidth;
    const overY = el.scrollHeight - el.clientHeight;
    if (overX <= 1 && overY <= 1) continue;
    const scrolls = (o) => o === 'auto' || o === 'scroll';
    if ((overX > 1 && scrolls(st.overflowX)) || (overY > 1 && scrolls(st.overflowY))) continue;
    const clips = st.overflowX === 'hidden' || st.overflowX === 'clip' || st.textOverflow === 'ellipsis';
    if (clips) {
      if (overX > 1 && !el.title && !el.closest('[title]')) out.push({ what: 'clipped text', detail: name(el) + ' shows ' + el.clientWidth + ' of ' + el.scrollWidth + ' px' });
      continue;
    }
    if (overX > 1 && st.display !== 'inline') out.push({ what: 'overflow', detail: name(el) + ': content ' + el.scrollWidth + ' px wide in a ' + el.clientWidth + ' px box' });
  }

  const buttons = all.filter((el) => el.matches('button, .button, [role=button]'));
  const others = all.filter((el) => el.matches('input, select, textarea, p, h1, h2, h3, label, li, td, th, dt, dd, summary, legend') && !el.matches('button *'));
  // Anything a button could sit under: every block box that is not part of a button.
  const blocks = all.filter((el) => !el.matches('button, .button, [role=button], button *, .button *') && getComputedStyle(el).display !== 'inline');
  // What is seen of a box: cut by every ancestor that scrolls or clips (a row half scrolled out of its list
  // reaches, in its own rectangle, over the buttons under the list, but nobody sees that part).
  const rect = (el) => {
    const r = el.getBoundingClientRect();
    let left = r.left, top = r.top, right = r.right, bottom = r.bottom;
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const ps = getComputedStyle(p);
      if (ps.overflowX === 'visible' && ps.overflowY === 'visible') continue;
      const pr = p.getBoundingClientRect();
      left = Math.max(left, pr.left);
      top = Math.max(top, pr.top);
      right = Math.min(right, pr.right);
      bottom = Math.min(bottom, pr.bottom);
    }
    return { left, top, right, bottom };
  };
  const overlaps = (a, b) => Math.min(a.right, b.right) - Math.max(a.left, b.left) > 1 && Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 1;
  for (let i = 0; i < buttons.length; i++) {
    const a = rect(buttons[i]);
    for (let j = i + 1; j < buttons.length; j++) {
      if (buttons[i].contains(buttons[j]) || buttons[j].contains(buttons[i])) continue;
      if (overlaps(a, rect(buttons[j]))) out.push({ what: 'overlap', detail: name(buttons[i]) + ' overlaps ' + name(buttons[j]) });
    }
    for (const o of others) {
      if (o.contains(buttons[i]) || buttons[i].contains(o)) continue;
      const b = rect(o);
      if (overlaps(a, b)) out.push({ what: 'overlap', detail: name(buttons[i]) + ' overlaps ' + name(o) });
    }
    // A box just above the button (sharing columns, not holding it): the button needs room to breathe.
    for (const o of blocks) {
      if (o.contains(buttons[i])) continue;
      // Rows of a list (the folder list, Recent images) are meant to stack.
      if (o.matches('li, li *') && buttons[i].closest('li')) continue;
      const b = rect(o);
      if (Math.min(a.right, b.right) - Math.max(a.left, b.left) > 1 && b.bottom <= a.top + 1 && a.top - b.bottom < 4) {
        out.push({ what: 'cramped', detail: name(buttons[i]) + ' is ' + Math.round(a.top - b.bottom) + ' px below ' + name(o) });
        break;
      }
    }
    // And a box just below it (the next card, a list under a header's button): not touching either.
    for (const o of blocks) {
      if (o.contains(buttons[i])) continue;
      if (o.matches('li, li *') && buttons[i].closest('li')) continue;
      const b = rect(o);
      if (Math.min(a.right, b.right) - Math.max(a.left, b.left) > 1 && b.top >= a.bottom - 1 && b.top - a.bottom < 4) {
        out.push({ what: 'cramped', detail: name(buttons[i]) + ' is ' + Math.round(b.top - a.bottom) + ' px above ' + name(o) });
        break;
      }
    }
  }

  // Cards stacked or side by side need a gap a person sees as one (8 px at least).
  const cards = all.filter((el) => el.matches('.card, .stat, .legend-item, .format-choice, .timeline-card'));
  for (let i = 0; i < cards.length; i++) {
    const a = rect(cards[i]);
    for (let j = i + 1; j < cards.length; j++) {
      if (cards[i].contains(cards[j]) || cards[j].contains(cards[i])) continue;
      // Only cards of the same kind are compared: the rows of one list, the cards of one stack.
      if (cards[i].className !== cards[j].className && !(cards[i].matches('.card') && cards[j].matches('.card'))) continue;
      const b = rect(cards[j]);
      const sharedX = Math.min(a.right, b.right) - Math.max(a.left, b.left);
      const sharedY = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
      const min = cards[i].matches('.timeline-card') ? 4 : 8;
      const gapY = Math.max(b.top - a.bottom, a.top - b.bottom);
      const gapX = Math.max(b.left - a.right, a.left - b.right);
      if (sharedX > 1 && gapY < min - 0.5) out.push({ what: 'cramped', detail: name(cards[i]) + ' and ' + name(cards[j]) + ' are ' + Math.round(gapY) + ' px apart (above and below)' });
      else if (sharedY > 1 && gapX < min - 0.5) out.push({ what: 'cramped', detail: name(cards[i]) + ' and ' + name(cards[j]) + ' are ' + Math.round(gapX) + ' px apart (side by side)' });
    }
  }

  // Parts of a card that fill its width, ending short: walked down the card's normal flow, box by box.
  const shown = new Set(all);
  const FLOW = ['block', 'flow-root', 'list-item'];
  const BLOCKS = ['block', 'flow-root', 'list-item', 'flex', 'grid', 'table'];
  const TEXT = 'p, h1, h2, h3, h4, h5, h6, label, legend, summary, dt, dd, pre, blockquote, span, a, code, li, button, .button, input, select, textarea';
  const contentBox = (el) => {
    const r = el.getBoundingClientRect();
    const st = getComputedStyle(el);
    return { left: r.left + parseFloat(st.borderLeftWidth) + parseFloat(st.paddingLeft), right: r.right - parseFloat(st.borderRightWidth) - parseFloat(st.paddingRight) };
  };
  for (const card of all.filter((el) => el.matches('.card'))) {
    const spanning = [card];
    while (spanning.length) {
      const parent = spanning.pop();
      if (!FLOW.includes(getComputedStyle(parent).display)) continue;
      const box = contentBox(parent);
      const width = box.right - box.left;
      for (const el of parent.children) {
        if (!shown.has(el) || el.matches(TEXT)) continue;
        const st = getComputedStyle(el);
        if (!BLOCKS.includes(st.display) || st.position === 'absolute' || st.position === 'fixed' || st.float !== 'none') continue;
        const r = el.getBoundingClientRect();
        if (r.width <= width / 2 || Math.abs(r.left - box.left) > 2) continue;
        const short = box.right - r.right;
        if (short > 16) out.push({ what: 'short of the card', detail: name(el) + ' ends ' + Math.round(short) + ' px before the right edge of ' + name(parent) + ' (' + Math.round(r.width) + ' of ' + Math.round(width) + ' px)' });
        else spanning.push(el);
      }
    }
  }

  // Titles of one kind side by side: one weight.
  const titleGroups = new Map();
  for (const el of all) {
    const grand = el.parentElement && el.parentElement.parentElement;
    if (!grand || typeof el.className !== 'string' || !el.className.trim()) continue;
    if (!Array.from(el.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    if (!titleGroups.has(grand)) titleGroups.set(grand, new Map());
    const kinds = titleGroups.get(grand);
    const kind = el.tagName + '.' + el.className.trim().split(/\s+/).sort().join('.');
    if (!kinds.has(kind)) kinds.set(kind, []);
    kinds.get(kind).push(el);
  }
  for (const kinds of titleGroups.values()) {
    for (const els of kinds.values()) {
      if (els.length < 2) continue;
      const weights = new Set(els.map((el) => getComputedStyle(el).fontWeight));
      if (weights.size > 1) out.push({ what: 'uneven titles', detail: els.map((el) => name(el) + ' ' + getComputedStyle(el).fontWeight).join(', ') });
    }
  }

  // The notes of cards: one size on a page.
  const notes = all.filter((el) => el.matches('.card p.muted, .card p.help') && !el.closest('table, li, button, .button'));
  const noteSizes = new Map();
  for (const el of notes) {
    const size = Math.round(parseFloat(getComputedStyle(el).fontSize) * 10) / 10;
    if (!noteSizes.has(size)) noteSizes.set(size, []);
    noteSizes.get(size).push(el);
  }
  // Within a pixel is one size to the eye (a map's 12 px caption beside 12.8 px help).
  const sizes = Array.from(noteSizes.keys());
  if (sizes.length && Math.max(...sizes) - Math.min(...sizes) > 1) out.push({ what: 'uneven notes', detail: Array.from(noteSizes, ([size, els]) => size + ' px: ' + els.slice(0, 3).map(name).join(', ')).join('; ') });

  // Words: a format's internal name where a sentence names the format (the KVM card's "this one is parallels").
  const ID_IN_WORDS = /\\b(?:is|are|a|an|the|of|from|to|into) (qcow2|vmdk|vhdx|vpc|vdi|parallels|cow)\\b(?![.\\/-]\\w)/;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let t = walker.nextNode(); t; t = walker.nextNode()) {
    const el = t.parentElement;
    if (!el || el.closest('code, pre, kbd, samp, script, style, option, textarea') || !visible(el)) continue;
    const m = ID_IN_WORDS.exec(t.textContent || '');
    if (m) out.push({ what: 'format id in words', detail: name(el) + ' says “' + m[0] + '”' });
  }

  // A select's choice in words wants the app's font; the monospace is for paths and values typed as qemu-img takes them.
  // And the choice shown must fit the box: a select cuts its text off without an ellipsis or a title.
  const pen = document.createElement('canvas').getContext('2d');
  for (const el of all) {
    if (el.tagName !== 'SELECT' || el.selectedIndex < 0) continue;
    const st = getComputedStyle(el);
    const text = (el.options[el.selectedIndex].text || '').trim();
    if (/\\s/.test(text) && /mono/i.test(st.fontFamily)) out.push({ what: 'words in a code font', detail: name(el) + ' shows “' + text.slice(0, 40) + '” in ' + st.fontFamily });
    pen.font = st.font;
    // The drop-down arrow takes ~20 px inside the padding box.
    const room = el.clientWidth - parseFloat(st.paddingLeft) - parseFloat(st.paddingRight) - 20;
    const width = pen.measureText(text).width;
    if (width > room + 1) out.push({ what: 'clipped text', detail: name(el) + ' shows “' + text.slice(0, 60) + '” (' + Math.round(width) + ' px) in ' + Math.round(room) + ' px' });
  }

  // Words broken inside their letters: a run of letters whose first and last letters sit on different lines; a
  // command's option ("vmkfstools -i") counts as one word with its hyphen.
  const wordWalker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  for (let t = wordWalker.nextNode(); t; t = wordWalker.nextNode()) {
    const el = t.parentElement;
    const text = t.textContent || '';
    if (!el || /[\\/\\\\]/.test(text) || el.closest('code, pre, kbd, samp, script, style, option, textarea, svg') || !visible(el)) continue;
    if (/mono/i.test(getComputedStyle(el).fontFamily)) continue;
    const letters = /(?<=^|\\s)-{1,2}[A-Za-z][A-Za-z0-9-]*|[A-Za-z]{2,}/g;
    for (let m = letters.exec(text); m; m = letters.exec(text)) {
      range.setStart(t, m.index);
      range.setEnd(t, m.index + 1);
      const first = range.getBoundingClientRect();
      range.setStart(t, m.index + m[0].length - 1);
      range.setEnd(t, m.index + m[0].length);
      const last = range.getBoundingClientRect();
      if (last.top > first.bottom - 2) {
        out.push({ what: 'broken word', detail: name(el) + ' breaks “' + m[0] + '” across lines' });
        break;
      }
    }
  }

  // A rounded size that reads as exact beside the exact bytes it is not.
  const UNIT_BYTES = { KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30, TiB: 2 ** 40, PiB: 2 ** 50, EiB: 2 ** 60 };
  for (const el of all) {
    if (!el.matches('.stat, dd')) continue;
    const text = el.innerText || '';
    const exact = /([\\d,]+) bytes/.exec(text);
    const whole = /(^|[^\\d.≈])(\\d+) (KiB|MiB|GiB|TiB|PiB|EiB)\\b/.exec(text);
    if (exact && whole && Number(exact[1].replace(/,/g, '')) !== Number(whole[2]) * UNIT_BYTES[whole[3]]) {
      out.push({ what: 'rounded size as exact', detail: name(el) + ' says “' + whole[2] + ' ' + whole[3] + '” beside “' + exact[0] + '”' });
    }
  }

  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth + 1) out.push({ what: 'sideways scroll', detail: 'the page is ' + root.scrollWidth + ' px wide in a ' + root.clientWidth + ' px window' });
  return out;
})()`;

/** The layout defects of the page as it is now. */
export async function layoutDefects(page: Page): Promise<LayoutDefect[]> {
  return page.evaluate(MEASURE) as Promise<LayoutDefect[]>;
}
