/**
 * The renderer is served from app://diskwright/ rather than file://: a file:// page can read any file:// URL
 * (Electron's GrantFileProtocolExtraPrivileges fuse is turned off in electron-builder.yml), and no header can
 * carry a Content-Security-Policy there. This handler serves only the files of dist/renderer (no path
 * escape, no dotfiles, GET only) and sets the CSP header itself: connect-src 'none', since the window talks to
 * the main process over IPC only.
 */
import type { Protocol } from 'electron';
import { promises as fsp } from 'node:fs';
import { contentSecurityPolicy } from '../api/csp';
import { contentTypeOf, realRendererFile, rendererPathFor } from '../api/renderer-files';

export const APP_SCHEME = 'app';
export const APP_HOST = 'diskwright';
/** The window's page. */
export const APP_INDEX_URL = `${APP_SCHEME}://${APP_HOST}/index.html`;

/**
 * Before the app is ready (Electron allows it only then): app:// is a standard, secure scheme, so the page has
 * an origin, relative URLs resolve, and it counts as a secure context. It gets no privilege beyond that: it
 * does not bypass the CSP, and has no service workers, fetch, CORS or streaming.
 */
export function registerAppScheme(protocol: Pick<Protocol, 'registerSchemesAsPrivileged'>): void {
  protocol.registerSchemesAsPrivileged([
    { scheme: APP_SCHEME, privileges: { standard: true, secure: true, bypassCSP: false, allowServiceWorkers: false, supportFetchAPI: false, corsEnabled: false, stream: false } },
  ]);
}

/** True when the URL is our own page (any query or fragment). */
export function isAppPage(url: string | undefined): boolean {
  if (!url) return false;
  try {
    const u = new URL(url);
    return u.protocol === `${APP_SCHEME}:` && u.host === APP_HOST && (u.pathname === '/index.html' || u.pathname === '/');
  } catch {
    return false;
  }
}

/**
 * The file of `rendererDir` an app:// URL names, or null: another host, an escape from the folder (.., an
 * encoded one, a NUL), a dotfile, or anything that does not decode.
 */
export function rendererFileFor(rendererDir: string, url: string): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  if (u.protocol !== `${APP_SCHEME}:` || u.host !== APP_HOST) return null;
  let rel: string;
  try {
    rel = decodeURIComponent(u.pathname);
  } catch {
    return null;
  }
  return rendererPathFor(rendererDir, rel);
}

/** The headers every answer carries. */
export function appHeaders(contentType: string): Record<string, string> {
  return {
    'Content-Type': contentType,
    'Content-Security-Policy': contentSecurityPolicy(),
    'X-Content-Type-Options': 'nosniff',
    'Cache-Control': 'no-cache',
  };
}

/** The answer to one app:// request (exported for the configuration test; Electron calls it through handle()). */
export async function serveAppRequest(rendererDir: string, request: { url: string; method: string }): Promise<Response> {
  const notFound = () => new Response('not found', { status: 404, headers: appHeaders('text/plain; charset=utf-8') });
  if (request.method !== 'GET' && request.method !== 'HEAD') return new Response('method not allowed', { status: 405, headers: appHeaders('text/plain; charset=utf-8') });
  const file = rendererFileFor(rendererDir, request.url);
  if (!file) return notFound();
  try {
    const real = await realRendererFile(rendererDir, file);
    if (!real) return notFound();
    const body = request.method === 'HEAD' ? null : await fsp.readFile(real);
    return new Response(body, { status: 200, headers: appHeaders(contentTypeOf(real)) });
  } catch {
    return notFound();
  }
}

/** After ready: app:// answers from rendererDir. */
export function handleAppProtocol(protocol: Pick<Protocol, 'handle'>, rendererDir: string): void {
  protocol.handle(APP_SCHEME, (request) => serveAppRequest(rendererDir, request));
}
