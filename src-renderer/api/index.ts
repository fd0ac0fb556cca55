import type { DiskwrightApi } from '../../src-shared/api';
import { toApiError } from './errors';
import { SocketApi } from './socket';

export { ApiError, toApiError } from './errors';

/** What Electron's preload exposes: the contract plus the path of a dropped file. */
export interface DesktopBridge extends DiskwrightApi {
  pathForFile(file: File): string;
}

declare global {
  interface Window {
    diskwright?: DesktopBridge;
  }
}

/** The desktop bridge rejects with plain error objects; make every failure an ApiError. */
function wrapDesktop(bridge: DesktopBridge): DiskwrightApi {
  const guard =
    <A extends unknown[], R>(fn: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      try {
        return await fn(...args);
      } catch (err) {
        throw toApiError(err);
      }
    };
  return {
    inspect: guard(bridge.inspect),
    mapPicture: guard(bridge.mapPicture),
    allowBackingPath: guard(bridge.allowBackingPath),
    formats: guard(bridge.formats),
    recentImages: guard(bridge.recentImages),
    createOptions: guard(bridge.createOptions),
    listDir: guard(bridge.listDir),
    pickImage: guard(bridge.pickImage),
    pickTarget: guard(bridge.pickTarget),
    targetInfo: guard(bridge.targetInfo),
    snapshots: guard(bridge.snapshots),
    snapshotSpace: guard(bridge.snapshotSpace),
    snapshotMap: guard(bridge.snapshotMap),
    snapshotDiff: guard(bridge.snapshotDiff),
    measure: guard(bridge.measure),
    commitPlan: guard(bridge.commitPlan),
    rebasePlan: guard(bridge.rebasePlan),
    startJob: guard(bridge.startJob),
    cancelJob: guard(bridge.cancelJob),
    onJobEvent: (listener) => bridge.onJobEvent(listener),
  };
}

function socketUrl(): string {
  const token = new URLSearchParams(window.location.search).get('token') ?? '';
  const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${window.location.host}/ws?token=${encodeURIComponent(token)}`;
}

/** True inside the Electron app, where native dialogs and dropped-file paths exist. */
export const isDesktop = typeof window !== 'undefined' && window.diskwright !== undefined;

export const api: DiskwrightApi = window.diskwright ? wrapDesktop(window.diskwright) : new SocketApi(socketUrl());

/** The path of a dropped file, where the platform can tell it (Electron); undefined in a browser. */
export function pathOfDroppedFile(file: File): string | undefined {
  if (!window.diskwright) return undefined;
  const p = window.diskwright.pathForFile(file);
  return p ? p : undefined;
}
