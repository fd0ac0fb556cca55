/**
 * The browser host: the same window the Electron app shows, served to a browser on 127.0.0.1, with the
 * contract carried over a WebSocket. Anything on this machine can reach a loopback port, so every page
 * load and every socket must present the per-launch token, and sockets must come from our own origin.
 * The token arrives once in the printed address; that first load sets it as a cookie (HttpOnly,
 * SameSite=Strict, Path=/) and the page takes it out of the address bar (strip-token.js) before anything
 * else runs, so it is not left in the browser's history. Reloads and the socket present the cookie.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as nodePath from 'node:path';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { BackingGrants } from '../block/backing-path';
import type { BackingPolicy } from '../block/types';
import { JobManager } from '../services/jobs';
import { preloadDrivers } from '../registry';
import { createApi } from '../api';
import { contentSecurityPolicy } from '../api/csp';
import { contentTypeOf, realRendererFile, rendererPathFor } from '../api/renderer-files';
import { HostConnection } from './connection';
import { forgetAllKeys } from '../keyring';

export interface HostOptions {
  /** 0 (the default) picks a free port. */
  port?: number;
  /** The built renderer (dist/renderer). */
  staticDir?: string;
  /** Unset: the image's folder plus what the user allows during this launch (allowBackingPath). */
  backingPolicy?: BackingPolicy;
  /** Where the recently opened images are kept; unset: for this run only. */
  recentFile?: string;
}

export interface Host {
  /** The address to open, token included. */
  url: string;
  port: number;
  close(): Promise<void>;
}

const BIND_ADDRESS = '127.0.0.1';
/** A request is one JSON call with a few paths in it; nothing legitimate comes near this. */
const MAX_MESSAGE_BYTES = 1 << 20;
/** Windows open at once: a person has a few tabs, not hundreds; each socket holds buffers. */
export const MAX_SOCKETS = 64;

/** The project's root, found from this file whether it runs from src-main (tsx) or dist/main (built). */
function projectRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (existsSync(nodePath.join(dir, 'package.json')) && existsSync(nodePath.join(dir, 'src-main'))) return dir;
    const up = nodePath.dirname(dir);
    if (up === dir) return nodePath.resolve(__dirname, '..', '..', '..', '..');
    dir = up;
  }
}

export function defaultStaticDir(): string {
  return nodePath.join(projectRoot(), 'dist', 'renderer');
}

/**
 * The cookie's name. Cookies are shared by every port of a host name, so each launch's (each port's) has its own
 * name: two hosts running at once do not overwrite each other's.
 */
export function sessionCookieName(port: number): string {
  return `diskwright-${port}`;
}

/** One cookie's value from a Cookie header, or null. */
function cookieValue(header: string | undefined, name: string): string | null {
  if (!header) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}

/** Compares a presented token with ours in constant time; hashing first makes the lengths equal. */
function tokenMatches(given: string | null, token: string): boolean {
  if (given === null) return false;
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(token).digest();
  return timingSafeEqual(a, b);
}

export async function startHost(opts: HostOptions = {}): Promise<Host> {
  const staticDir = nodePath.resolve(opts.staticDir ?? defaultStaticDir());
  if (!existsSync(nodePath.join(staticDir, 'index.html'))) {
    throw new Error(`the user interface is not built (${nodePath.join(staticDir, 'index.html')} is missing); run npm run build`);
  }
  const token = randomBytes(32).toString('hex');
  // Grants live as long as this host: a new launch asks again.
  const backingGrants = new BackingGrants();
  const jobs = new JobManager(opts.backingPolicy ?? backingGrants.policy('refuse'));
  const api = createApi(jobs, { backingPolicy: opts.backingPolicy, backingGrants, recentFile: opts.recentFile });

  let port = 0;
  const cookieName = () => sessionCookieName(port);
  // A page reached as localhost is the same place; any other Host header is a DNS-rebinding attempt.
  const allowedHosts = () => new Set([`${BIND_ADDRESS}:${port}`, `localhost:${port}`]);
  const allowedOrigins = () => new Set([`http://${BIND_ADDRESS}:${port}`, `http://localhost:${port}`]);

  const securityHeaders = (): Record<string, string> => ({
    'Content-Security-Policy': contentSecurityPolicy(`ws://${BIND_ADDRESS}:${port} ws://localhost:${port}`),
    'X-Content-Type-Options': 'nosniff',
    'X-Frame-Options': 'DENY',
    // The first load has the token in its address: no request may carry it elsewhere in a Referer.
    'Referrer-Policy': 'no-referrer',
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Resource-Policy': 'same-origin',
  });

  const reply = (res: http.ServerResponse, status: number, text: string) => {
    res.writeHead(status, { ...securityHeaders(), 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(text + '\n');
  };

  const server = http.createServer((req, res) => {
    void serve(req, res).catch(() => {
      if (!res.headersSent) reply(res, 500, 'internal error');
      else res.destroy();
    });
  });

  async function serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (!allowedHosts().has(req.headers.host ?? '')) return reply(res, 421, 'this server only answers as 127.0.0.1');
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, 'method not allowed');
    const url = new URL(req.url ?? '/', `http://${BIND_ADDRESS}:${port}`);
    let rel: string;
    try {
      rel = decodeURIComponent(url.pathname);
    } catch {
      return reply(res, 400, 'bad address');
    }
    if (rel === '/' || rel === '/index.html') {
      const byCookie = tokenMatches(cookieValue(req.headers.cookie, cookieName()), token);
      const byAddress = tokenMatches(url.searchParams.get('token'), token);
      if (!byCookie && !byAddress) {
        return reply(res, 403, 'This address needs the token diskwright printed when it started. Open the full address it printed.');
      }
      // The first load brings the token in the address; from then on the cookie carries it.
      const cookie: Record<string, string> = byAddress ? { 'Set-Cookie': `${cookieName()}=${token}; HttpOnly; SameSite=Strict; Path=/` } : {};
      return sendFile(req, res, nodePath.join(staticDir, 'index.html'), true, cookie);
    }
    // The built assets hold no secrets; they are served to anyone who can reach the port, but only from
    // inside the renderer folder, and never dotfiles.
    const full = rendererPathFor(staticDir, rel);
    if (!full) return reply(res, 404, 'not found');
    return sendFile(req, res, full, false);
  }

  async function sendFile(req: http.IncomingMessage, res: http.ServerResponse, file: string, isPage: boolean, extra: Record<string, string> = {}): Promise<void> {
    let body: Buffer;
    // Links followed, the file must still be a regular file inside the renderer folder.
    const real = await realRendererFile(staticDir, file);
    if (!real) return reply(res, 404, 'not found');
    try {
      body = await fsp.readFile(real);
    } catch {
      return reply(res, 404, 'not found');
    }
    res.writeHead(200, {
      ...securityHeaders(),
      'Content-Type': contentTypeOf(real),
      'Content-Length': String(body.length),
      'Cache-Control': isPage ? 'no-store' : 'no-cache',
      ...extra,
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES });

  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', `http://${BIND_ADDRESS}:${port}`);
    const ok =
      url.pathname === '/ws' &&
      allowedHosts().has(req.headers.host ?? '') &&
      allowedOrigins().has(req.headers.origin ?? '') &&
      // The page's socket presents the cookie; a program (a test, a script) may give the token instead.
      (tokenMatches(cookieValue(req.headers.cookie, cookieName()), token) || tokenMatches(url.searchParams.get('token'), token));
    if (!ok) {
      socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    if (wss.clients.size >= MAX_SOCKETS) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });

  // Each socket is kept within bounds (calls in flight, send back-pressure) and its jobs end with it: connection.ts.
  const connections = new WeakMap<WebSocket, HostConnection>();
  wss.on('connection', (ws: WebSocket) => {
    connections.set(ws, new HostConnection(ws, api, jobs));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, BIND_ADDRESS, () => {
      server.off('error', reject);
      resolve();
    });
  });
  port = (server.address() as AddressInfo).port;
  // The format drivers' code loads now, while the person opens the page, not when the first image is opened.
  setImmediate(() => void preloadDrivers().catch(() => undefined));

  return {
    url: `http://${BIND_ADDRESS}:${port}/?token=${token}`,
    port,
    close: async () => {
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      // The passphrases the page unlocked images with die with the host: wiped, not just dropped.
      forgetAllKeys();
    },
  };
}
