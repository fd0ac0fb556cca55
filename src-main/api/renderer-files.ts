/**
 * Which file of the built renderer (dist/renderer) a request names, for the two faces that serve it: the
 * Electron app:// handler and the browser host. One rule for both: the decoded path must stay inside the
 * folder, name no dotfile, hold no NUL or backslash, and — after following links — still land on a regular
 * file inside the folder, so a symlink placed in the folder cannot lead out of it.
 */
import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';

export const RENDERER_CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.json': 'application/json',
  '.map': 'application/json',
};

export function contentTypeOf(file: string): string {
  return RENDERER_CONTENT_TYPES[nodePath.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

/** The path inside `rootDir` that the decoded URL path `rel` names, or null when it names none we serve. */
export function rendererPathFor(rootDir: string, rel: string): string | null {
  if (rel === '/' || rel === '') rel = '/index.html';
  if (rel.includes('\0') || rel.includes('\\')) return null;
  const root = nodePath.resolve(rootDir);
  const full = nodePath.resolve(root, '.' + rel);
  const inside = nodePath.relative(root, full);
  if (inside === '' || inside.startsWith('..') || nodePath.isAbsolute(inside)) return null;
  if (inside.split(nodePath.sep).some((part) => part.startsWith('.'))) return null;
  return full;
}

/** The file's real path when, links followed, it is a regular file inside `rootDir`; otherwise null. */
export async function realRendererFile(rootDir: string, file: string): Promise<string | null> {
  try {
    const real = await fsp.realpath(file);
    const inside = nodePath.relative(await fsp.realpath(rootDir), real);
    if (inside === '' || inside.startsWith('..') || nodePath.isAbsolute(inside)) return null;
    return (await fsp.stat(real)).isFile() ? real : null;
  } catch {
    return null;
  }
}
