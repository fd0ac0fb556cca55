/**
 * Keyboard focus is never dropped on the floor. When the focused control disappears (a wizard moves to its next
 * step, a confirmation closes, a view gives way to another) or is disabled under the cursor, the browser puts
 * focus on <body>, and the next Tab starts again at the top of the page. This puts it where the person's work
 * went instead: into the wizard's new step (its first field, else its heading, else the step itself), else onto
 * a status line just shown (what was done), else onto the view's title. It acts only when focus was lost that
 * way: a click on empty space is left alone. One watcher for every view, so a view needs nothing of its own.
 */

const FIELD = 'input:not([type=hidden]):not([type=checkbox]):not([type=radio]):not(:disabled), select:not(:disabled), textarea:not(:disabled)';

function shown(el: Element): el is HTMLElement {
  if (!(el instanceof HTMLElement)) return false;
  const r = el.getBoundingClientRect();
  return r.width > 0 && r.height > 0 && getComputedStyle(el).visibility !== 'hidden';
}

function focusOn(el: HTMLElement): void {
  // Headings and cards are not in the Tab order; -1 lets them take focus without joining it.
  if (el.tabIndex < 0 && !el.hasAttribute('tabindex')) el.setAttribute('tabindex', '-1');
  el.focus();
}

/** Where focus goes in `root` once the control that held it is gone. */
export function focusTarget(root: ParentNode): HTMLElement | null {
  const step = Array.from(root.querySelectorAll('.wizard-card')).find(shown);
  if (step) {
    const field = Array.from(step.querySelectorAll(FIELD)).find(shown);
    if (field) return field;
    const heading = Array.from(step.querySelectorAll('h2, h3')).find(shown);
    return heading ?? step;
  }
  const status = Array.from(root.querySelectorAll('.banner[role=status], .banner[role=alert]')).find(shown);
  if (status) return status;
  const title = Array.from(root.querySelectorAll('h1')).find(shown);
  return title ?? null;
}

/** Watches `root` (the views' container) for the focused control going away, and moves focus into it. */
export function keepFocus(root: HTMLElement): () => void {
  let held: Element | null = null;
  const onFocusIn = (e: FocusEvent) => {
    held = root.contains(e.target as Node) ? (e.target as Element) : null;
  };
  const lost = () => held !== null && (!held.isConnected || held.matches(':disabled')) && (document.activeElement === document.body || document.activeElement === null);
  const repair = () => {
    if (!lost()) return;
    const target = focusTarget(root);
    held = null;
    if (target) focusOn(target);
  };
  document.addEventListener('focusin', onFocusIn);
  const observer = new MutationObserver(repair);
  observer.observe(root, { childList: true, subtree: true, attributes: true, attributeFilter: ['disabled'] });
  return () => {
    document.removeEventListener('focusin', onFocusIn);
    observer.disconnect();
  };
}
