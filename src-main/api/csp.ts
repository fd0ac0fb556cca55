/**
 * The Content-Security-Policy both faces send with the renderer (and index.html repeats as a meta tag): our
 * own scripts and styles only, nothing framed, no forms. `connectSrc` is what the page may connect to: nothing
 * in Electron (IPC is no connection), the host's own WebSocket in the browser host.
 */
export function contentSecurityPolicy(connectSrc = "'none'"): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    `connect-src ${connectSrc}`,
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}
