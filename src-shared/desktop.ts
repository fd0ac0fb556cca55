/**
 * What the desktop app's main process tells the window besides job events: the native menu's commands and the
 * files the system asks the app to open (a double-click on an associated file, a second launch with a path, a
 * file dropped on the Dock icon). All arrive on one channel; the renderer routes them (src-renderer/desktop.ts).
 */

export type DesktopCommandChannel = 'desktop-command';
export const DESKTOP_COMMAND_CHANNEL: DesktopCommandChannel = 'desktop-command';

export type DesktopCommand =
  /** File → New image… */
  | { command: 'new-image' }
  /** Open an image on Inspect: File → Open… (after the native dialog), Open Recent, open-file, second-instance. */
  | { command: 'open-path'; path: string }
  /** File → Convert… (the image on screen) */
  | { command: 'convert' }
  /** File → Check & Repair… (the image on screen) */
  | { command: 'check-repair' };

/** A value that crossed a bridge, checked before it is acted on. */
export function isDesktopCommand(value: unknown): value is DesktopCommand {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as { command?: unknown; path?: unknown };
  switch (v.command) {
    case 'new-image':
    case 'convert':
    case 'check-repair':
      return true;
    case 'open-path':
      return typeof v.path === 'string' && v.path.length > 0 && v.path.length <= 4096 && !v.path.includes('\0');
    default:
      return false;
  }
}
