/**
 * The bridge between the sandboxed renderer and the main process: `call` (a contract method by name, its
 * arguments as a list; the main side checks both, as the browser host does), onJobEvent, and pathForFile (a
 * dropped file's path, which only Electron can give). The renderer builds the contract's methods on `call`
 * from API_METHODS, so no list of methods is kept here.
 * A sandboxed preload may only require('electron'), so everything from our own modules is a type import.
 */
import { contextBridge, ipcRenderer, webUtils, type IpcRendererEvent } from 'electron';
import type { ApiCallChannel, ApiCaller, DesktopBridge, IpcReply, JobEvent, JobEventChannel, Unsubscribe } from '../src-shared/api';

/** The contract's channel names; a runtime import is not possible here, the types keep the two the same. */
const API_CALL_CHANNEL: ApiCallChannel = 'api-call';
const JOB_EVENT_CHANNEL: JobEventChannel = 'job-event';

/**
 * Calls one method and unwraps its reply. A failure rejects with the plain DiskErrorDto object (code,
 * message, path), which survives the context bridge; an Error would arrive as its message alone.
 */
const call: ApiCaller = async (method, args) => {
  const reply = (await ipcRenderer.invoke(API_CALL_CHANNEL, method, args)) as IpcReply<never>;
  if (reply.ok) return reply.result;
  throw reply.error;
};

const bridge: DesktopBridge = {
  call,
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
