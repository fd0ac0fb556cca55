/**
 * The bridge between the sandboxed renderer and the main process: `call` (a contract method by name, its
 * arguments as a list; the main side checks both, as the browser host does), onJobEvent, pathForFile (a
 * dropped file's path, which only Electron can give) and onDesktopCommand (the native menu's commands and the
 * files the system opens with the app). The renderer builds the contract's methods on `call`
 * from API_METHODS, so no list of methods is kept here.
 * A sandboxed preload may only require('electron'), so everything from our own modules is a type import.
 */
import { contextBridge, ipcRenderer, webUtils, type IpcRendererEvent } from 'electron';
import type { ApiCallChannel, ApiCaller, DesktopBridge, IpcReply, JobEvent, JobEventChannel, Unsubscribe } from '../src-shared/api';
import type { DesktopCommand, DesktopCommandChannel } from '../src-shared/desktop';

/** The contract's channel names; a runtime import is not possible here, the types keep the two the same. */
const API_CALL_CHANNEL: ApiCallChannel = 'api-call';
const JOB_EVENT_CHANNEL: JobEventChannel = 'job-event';
const DESKTOP_COMMAND_CHANNEL: DesktopCommandChannel = 'desktop-command';

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
  onDesktopCommand(listener: (c: DesktopCommand) => void): Unsubscribe {
    // The renderer checks each command (isDesktopCommand) before acting on it.
    const onCommand = (_event: IpcRendererEvent, c: DesktopCommand) => listener(c);
    ipcRenderer.on(DESKTOP_COMMAND_CHANNEL, onCommand);
    return () => {
      ipcRenderer.removeListener(DESKTOP_COMMAND_CHANNEL, onCommand);
    };
  },
};

contextBridge.exposeInMainWorld('diskwright', bridge);
