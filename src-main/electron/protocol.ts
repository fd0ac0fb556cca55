/**
 * The renderer is served from app://diskwright/ rather than file://: a file:// page can read any file:// URL
 * (Electron's GrantFileProtocolExtraPrivileges fuse is turned off in electron-builder.yml), and no header can
 * carry a Content-Security-Policy there. This handler serves only the files of dist/renderer (no path
 * escape, no dotfiles, GET only) and sets the CSP header itself: connect-src 'none', since the window talks to
 * the main process over IPC only.
 */
import type { Protocol } from 'electron';
import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { contentSecurityPolicy } from '../api/csp';

export const APP_SCHEME = 'app';
export const APP_HOST = 'diskwright';
/** The window's page. */
export const APP_INDEX_URL = `${APP_SCHEME}://${APP_HOST}/index.html`;

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.json': 'application/json',
};

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
  if (rel === '/' || rel === '') rel = '/index.html';
  if (rel.includes('\0') || rel.includes('\\')) return null;
  const root = nodePath.resolve(rendererDir);
  const full = nodePath.resolve(root, '.' + rel);
  const inside = nodePath.relative(root, full);
  if (inside === '' || inside.startsWith('..') || nodePath.isAbsolute(inside)) return null;
  if (inside.split(nodePath.sep).some((part) => part.startsWith('.'))) return null;
  return full;
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
    // A symlink inside the folder must not lead out of it either.
    const real = await fsp.realpath(file);
    const root = await fsp.realpath(rendererDir);
    if (nodePath.relative(root, real).startsWith('..')) return notFound();
    const st = await fsp.stat(real);
    if (!st.isFile()) return notFound();
    const body = request.method === 'HEAD' ? null : await fsp.readFile(real);
    return new Response(body, { status: 200, headers: appHeaders(CONTENT_TYPES[nodePath.extname(real).toLowerCase()] ?? 'application/octet-stream') });
  } catch {
    return notFound();
  }
}

/** After ready: app:// answers from rendererDir. */
export function handleAppProtocol(protocol: Pick<Protocol, 'handle'>, rendererDir: string): void {
  protocol.handle(APP_SCHEME, (request) => serveAppRequest(rendererDir, request));
}
