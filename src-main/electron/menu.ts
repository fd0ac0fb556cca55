/**
 * The native menu: File (New image, Open, Open Recent, Convert, Check & Repair, Close/Quit), Edit, View,
 * Window (macOS) and Help, with the usual accelerators. Items that act on images send a DesktopCommand to the
 * window (src-renderer/desktop.ts routes it); Edit and View are Electron's roles. Built as a plain template so
 * that the configuration test can read it without Electron.
 */
import type { MenuItemConstructorOptions } from 'electron';
import * as nodePath from 'node:path';
import type { DesktopCommand } from '../../src-shared/desktop';

export interface MenuActions {
  /** Sends a command to the window. */
  send(command: DesktopCommand): void;
  /** File → Open…: the native open dialog, then open-path. */
  open(): void;
  /** The recent images, newest first (at most the first 10 are listed). */
  recent: readonly string[];
  isMac: boolean;
  /** Reload and the developer tools are offered only while developing. */
  packaged: boolean;
}

export const RECENT_IN_MENU = 10;

export function menuTemplate(a: MenuActions): MenuItemConstructorOptions[] {
  const recent: MenuItemConstructorOptions[] = a.recent.slice(0, RECENT_IN_MENU).map((path) => ({
    label: nodePath.basename(path),
    sublabel: path,
    toolTip: path,
    click: () => a.send({ command: 'open-path', path }),
  }));
  const file: MenuItemConstructorOptions = {
    label: '&File',
    submenu: [
      { label: 'New Image…', accelerator: 'CmdOrCtrl+N', click: () => a.send({ command: 'new-image' }) },
      { label: 'Open…', accelerator: 'CmdOrCtrl+O', click: () => a.open() },
      {
        label: 'Open Recent',
        submenu: recent.length ? recent : [{ label: 'No recent images', enabled: false }],
      },
      { type: 'separator' },
      { label: 'Convert…', accelerator: 'CmdOrCtrl+Shift+S', click: () => a.send({ command: 'convert' }) },
      { label: 'Check && Repair…', accelerator: 'CmdOrCtrl+Shift+K', click: () => a.send({ command: 'check-repair' }) },
      { type: 'separator' },
      a.isMac ? { role: 'close' } : { role: 'quit', accelerator: 'Ctrl+Q' },
    ],
  };
  const edit: MenuItemConstructorOptions = {
    label: '&Edit',
    submenu: [{ role: 'undo' }, { role: 'redo' }, { type: 'separator' }, { role: 'cut' }, { role: 'copy' }, { role: 'paste' }, { role: 'selectAll' }],
  };
  const view: MenuItemConstructorOptions = {
    label: '&View',
    submenu: [
      ...(a.packaged ? [] : ([{ role: 'reload' }, { role: 'toggleDevTools' }, { type: 'separator' }] as MenuItemConstructorOptions[])),
      { role: 'resetZoom' },
      { role: 'zoomIn' },
      { role: 'zoomOut' },
      { type: 'separator' },
      { role: 'togglefullscreen' },
    ],
  };
  const help: MenuItemConstructorOptions = {
    role: 'help',
    label: '&Help',
    submenu: [{ role: 'about', label: 'About diskwright' }],
  };
  if (!a.isMac) return [file, edit, view, help];
  const appMenu: MenuItemConstructorOptions = {
    role: 'appMenu',
    submenu: [{ role: 'about' }, { type: 'separator' }, { role: 'services' }, { type: 'separator' }, { role: 'hide' }, { role: 'hideOthers' }, { role: 'unhide' }, { type: 'separator' }, { role: 'quit' }],
  };
  return [appMenu, file, edit, view, { role: 'windowMenu' }, help];
}
