/**
 * Hash routing over the views: the URL (#/inspect?path=…) names what is on screen, so a reload brings it
 * back and Back/Forward move between views without leaving the app. The stores stay the source of truth:
 * the route shown is the first entry of the table (routes.ts) whose view is active, and the router only
 * (a) writes that to the URL as it changes and (b) on load and on Back/Forward, leaves the views the URL
 * no longer names and enters the one it does.
 */
import { computed, watch, type Component } from 'vue';

export type RouteQuery = Record<string, string>;

export interface RouteEntry {
  /** The URL's path: '#/' + name ('' for home). */
  name: string;
  view: Component;
  /** This view is on screen; the table's first active entry wins, so put the home view last. */
  active(): boolean;
  /** What the URL says about the view as it is now (its query). */
  query?(): RouteQuery;
  /** Brings the view up from a URL (a reload, Back or Forward); may return before it is ready. */
  enter?(query: RouteQuery): void | Promise<unknown>;
  /** Takes the view away when the URL no longer names it (Back from it). */
  leave?(): void;
}

/** '#/inspect?path=%2Fa' for a route and its query; keys in a fixed order so equal states give equal URLs. */
export function hashOf(name: string, query: RouteQuery = {}): string {
  const q = new URLSearchParams();
  for (const key of Object.keys(query).sort()) if (query[key] !== '') q.set(key, query[key]);
  const text = q.toString();
  return `#/${name}${text ? '?' + text : ''}`;
}

/** The route name and query a hash names ('' and {} for none). */
export function parseHash(hash: string): { name: string; query: RouteQuery } {
  const body = hash.replace(/^#\/?/, '');
  const at = body.indexOf('?');
  const name = decodeURIComponent(at < 0 ? body : body.slice(0, at));
  const query: RouteQuery = {};
  if (at >= 0) new URLSearchParams(body.slice(at + 1)).forEach((v, k) => (query[k] = v));
  return { name, query };
}

/** Starts routing over `routes` (the last one is home, always active); returns the view to show. */
export function startRouter(routes: RouteEntry[]) {
  const home = routes[routes.length - 1];
  const current = computed(() => routes.find((r) => r.active()) ?? home);
  const currentHash = computed(() => hashOf(current.value.name, current.value.query?.() ?? {}));
  const here = () => hashOf(parseHash(window.location.hash).name, parseHash(window.location.hash).query);
  const urlFor = (hash: string) => `${window.location.pathname}${window.location.search}${hash}`;

  // The app's own history entries, and which one is shown (kept in history.state so Back/Forward tell it).
  let entries: string[] = [];
  let index = 0;
  const push = (hash: string) => {
    entries = [...entries.slice(0, index + 1), hash];
    index = entries.length - 1;
    window.history.pushState({ dwIndex: index }, '', urlFor(hash));
  };
  const replace = (hash: string) => {
    entries[index] = hash;
    window.history.replaceState({ dwIndex: index }, '', urlFor(hash));
  };

  // A view opened in the app (a click) is a new history entry, so Back returns to the view before it. A view
  // closed in the app (a wizard's Close) that returns to the entry before goes back to it instead, and the
  // same view with a new query (an image's facts arriving) replaces its entry.
  // Set while a Back made here (not by the user) is on its way: its popstate only moves the URL, it must not
  // enter the view the URL named before — the app may have moved on meanwhile (a wizard closed and opened the
  // image it made: entering the previous image again would replace it).
  let ownBack = false;
  watch(currentHash, (hash) => {
    if (hash === here()) return;
    if (index > 0 && entries[index - 1] === hash) {
      ownBack = true;
      window.history.back();
    } else if (parseHash(hash).name === parseHash(here()).name) replace(hash);
    else push(hash);
  });

  /** Makes the stores show what the URL names; once the view has come up (or failed to), the URL follows what is shown. */
  function follow(): void {
    const { name, query } = parseHash(window.location.hash);
    const target = routes.find((r) => r.name === name) ?? home;
    for (const r of routes) if (r !== target && r.active()) r.leave?.();
    const wanted = hashOf(target.name, query);
    if (target.enter && (!target.active() || currentHash.value !== wanted)) {
      void Promise.resolve(target.enter(query)).finally(settle);
    } else settle();
  }
  /** A URL that named something that could not be shown (a missing image) is replaced by what is shown. */
  function settle(): void {
    if (currentHash.value !== here()) replace(currentHash.value);
  }

  window.addEventListener('popstate', (e: PopStateEvent) => {
    const i = (e.state as { dwIndex?: number } | null)?.dwIndex;
    if (typeof i === 'number' && i >= 0 && i < entries.length) index = i;
    else {
      // An entry this launch did not make (the address typed by hand): it goes on top of ours.
      entries = [...entries.slice(0, index + 1), here()];
      index = entries.length - 1;
      window.history.replaceState({ dwIndex: index }, '', window.location.href);
    }
    if (ownBack) {
      ownBack = false;
      settle();
      return;
    }
    follow();
  });
  // Opened on a view's URL (a reload): home goes beneath it, so Back from it returns home, not out of the app.
  const first = parseHash(window.location.hash);
  const firstTarget = routes.find((r) => r.name === first.name);
  entries = [hashOf(home.name)];
  index = 0;
  window.history.replaceState({ dwIndex: 0 }, '', urlFor(entries[0]));
  if (firstTarget && firstTarget !== home) {
    push(hashOf(first.name, first.query));
    follow();
  }
  return current;
}
