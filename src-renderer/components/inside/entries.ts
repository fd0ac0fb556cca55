/** A folder's entries as the file browser orders them, and paths inside the disk (pure: the unit tests run them). */
import type { InsideEntry } from '../../../src-shared/api';

export type SortKey = 'name' | 'size' | 'mtime';

/** Folders first, then by the key (names as a person reads them: case and accents folded, numbers by value). */
export function sortEntries(entries: InsideEntry[], key: SortKey, ascending: boolean): InsideEntry[] {
  const collator = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });
  const dir = ascending ? 1 : -1;
  return [...entries].sort((a, b) => {
    const fa = a.type === 'dir' ? 0 : 1;
    const fb = b.type === 'dir' ? 0 : 1;
    if (fa !== fb) return fa - fb;
    let c = 0;
    if (key === 'size') c = a.size - b.size;
    else if (key === 'mtime') c = (a.mtime ?? 0) - (b.mtime ?? 0);
    if (c === 0) c = collator.compare(a.name, b.name);
    return c * dir;
  });
}

/** '/a/b' joined with 'c'. */
export function joinInner(dir: string, name: string): string {
  return dir.endsWith('/') ? dir + name : `${dir}/${name}`;
}
