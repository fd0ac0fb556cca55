/**
 * The bridge between the sandboxed renderer and the main process: exactly one function per contract
 * method, plus onJobEvent and pathForFile (a dropped file's path, which only Electron can give).
 * A sandboxed preload may only require('electron'), so everything from our own modules is a type import.
 */
import { contextBridge, ipcRenderer, webUtils, type IpcRendererEvent } from 'electron';
import type { ApiMethod, DirListing, DiskwrightApi, FormatName, FormatSummary, ImageInfo, JobEventChannel, TargetInfo, IpcReply, JobEvent, JobId, JobSpec, MapPicture, OptionSpec, SnapshotDiff, SnapshotListing, CommitPlan, RebasePlan, MeasureReport, MeasureSpec, Unsubscribe } from '../src-shared/api';

/** The contract's channel name; a runtime import is not possible here, the type keeps the two the same. */
const JOB_EVENT_CHANNEL: JobEventChannel = 'job-event';

/**
 * Calls one method and unwraps its reply. A failure rejects with the plain DiskErrorDto object (code,
 * message, path), which survives the context bridge; an Error would arrive as its message alone.
 */
async function call<T>(method: ApiMethod, ...args: unknown[]): Promise<T> {
  const reply = (await ipcRenderer.invoke(method, ...args)) as IpcReply<T>;
  if (reply.ok) return reply.result;
  throw reply.error;
}

const bridge: DiskwrightApi & { pathForFile(file: File): string } = {
  inspect: (path: string, format?: FormatName) => (format === undefined ? call<ImageInfo>('inspect', path) : call<ImageInfo>('inspect', path, format)),
  mapPicture: (path: string, buckets: number) => call<MapPicture>('mapPicture', path, buckets),
  allowBackingPath: (imagePath: string, backingPath: string) => call<void>('allowBackingPath', imagePath, backingPath),
  formats: () => call<FormatSummary[]>('formats'),
  recentImages: () => call<string[]>('recentImages'),
  createOptions: (format: FormatName) => call<OptionSpec[]>('createOptions', format),
  listDir: (path?: string) => (path === undefined ? call<DirListing>('listDir') : call<DirListing>('listDir', path)),
  pickImage: () => call<string | undefined>('pickImage'),
  pickTarget: (suggestedName: string) => call<string | undefined>('pickTarget', suggestedName),
  targetInfo: (path: string) => call<TargetInfo>('targetInfo', path),
  snapshots: (path: string) => call<SnapshotListing>('snapshots', path),
  snapshotSpace: (path: string) => call<Record<string, number>>('snapshotSpace', path),
  snapshotMap: (path: string, snapshot: string, buckets: number) => call<MapPicture>('snapshotMap', path, snapshot, buckets),
  snapshotDiff: (path: string, a: string, b: string | undefined, buckets: number) => call<SnapshotDiff>('snapshotDiff', path, a, b ?? null, buckets),
  measure: (spec: MeasureSpec) => call<MeasureReport>('measure', spec),
  commitPlan: (path: string) => call<CommitPlan>('commitPlan', path),
  rebasePlan: (path: string, newBacking: string) => call<RebasePlan>('rebasePlan', path, newBacking),
  startJob: (spec: JobSpec) => call<JobId>('startJob', spec),
  cancelJob: (id: JobId) => call<void>('cancelJob', id),
  onJobEvent(listener: (e: JobEvent) => void): Unsubscribe {
    const onEvent = (_event: IpcRendererEvent, e: JobEvent) => listener(e);
    ipcRenderer.on(JOB_EVENT_CHANNEL, onEvent);
    return () => {
      ipcRenderer.removeListener(JOB_EVENT_CHANNEL, onEvent);
    };
  },
  pathForFile: (file: File) => webUtils.getPathForFile(file),
};

contextBridge.exposeInMainWorld('diskwright', bridge);
