/**
 * The contract as the renderer calls it: over Electron's preload bridge in the app, over the host's WebSocket in a
 * browser; every failure arrives as an ApiError in the app's words.
 */
import type { ApiCaller, DesktopBridge, DiskwrightApi, Unsubscribe } from '../../src-shared/api';
import type { DesktopCommand } from '../../src-shared/desktop';
import { clientOn } from './client';
import { toApiError } from './errors';
import { SocketConnection } from './socket';

export { ApiError, toApiError } from './errors';

declare global {
  interface Window {
    diskwright?: DesktopBridge;
  }
}

/** The desktop bridge rejects with plain error objects; every failure becomes an ApiError. */
function desktopApi(bridge: DesktopBridge): DiskwrightApi {
  const call: ApiCaller = (method, args) =>
    bridge.call(method, args).catch((err: unknown) => {
      throw toApiError(err);
    });
  return clientOn(call, (listener) => bridge.onJobEvent(listener));
}

/** The contract over the browser host's WebSocket. */
function socketApi(url: string): DiskwrightApi {
  const socket = new SocketConnection(url);
  return clientOn((method, args) => socket.call(method, args), (listener) => socket.onJobEvent(listener));
}

/** The host's socket; it authenticates by the cookie the first load set (the token is no longer in the address). */
function socketUrl(): string {
  const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${window.location.host}/ws`;
}

/** True inside the Electron app, where native dialogs and dropped-file paths exist. */
export const isDesktop = typeof window !== 'undefined' && window.diskwright !== undefined;

export const api: DiskwrightApi = window.diskwright ? desktopApi(window.diskwright) : socketApi(socketUrl());

/** The desktop app's menu commands and open requests (src-shared/desktop.ts); nothing in a browser. */
export function onDesktopCommand(listener: (c: DesktopCommand) => void): Unsubscribe {
  return window.diskwright?.onDesktopCommand?.(listener) ?? (() => undefined);
}

/** The path of a dropped file, where the platform can tell it (Electron); undefined in a browser. */
export function pathOfDroppedFile(file: File): string | undefined {
  if (!window.diskwright) return undefined;
  const p = window.diskwright.pathForFile(file);
  return p ? p : undefined;
}
