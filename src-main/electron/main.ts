/**
 * The Electron app: one window showing the renderer from dist/renderer, with the contract bound to IPC.
 * The renderer is treated as untrusted: it runs sandboxed without Node, may not navigate or open windows,
 * and every IPC call is checked for its sender and validated before a service sees it.
 */
import { app, BrowserWindow, dialog, ipcMain, session, type IpcMainInvokeEvent, type OpenDialogOptions, type SaveDialogOptions } from 'electron';
import * as nodePath from 'node:path';
import { pathToFileURL } from 'node:url';
import type { IpcReply, JobEvent } from '../../src-shared/api';
import { API_CALL_CHANNEL, JOB_EVENT_CHANNEL } from '../../src-shared/api';
import { BackingGrants } from '../block/backing-path';
import { DiskError } from '../block/errors';
import { JobManager } from '../services/jobs';
import { callApi, createApi, errorDto } from '../api';
import { contentSecurityPolicy } from '../api/csp';
import { formatSummaries } from '../registry';

/** dist/main/src-main/electron → dist/renderer and dist/main/src-main/preload.js. */
const RENDERER_INDEX = nodePath.join(__dirname, '..', '..', '..', 'renderer', 'index.html');
const PRELOAD = nodePath.join(__dirname, '..', 'preload.js');
const INDEX_URL = pathToFileURL(RENDERER_INDEX);
const CSP = contentSecurityPolicy();

/** The open dialog's filter, from the drivers' extensions. */
const IMAGE_FILTERS: OpenDialogOptions['filters'] = [
  { name: 'Disk images', extensions: [...new Set(formatSummaries().flatMap((f) => f.extensions))] },
  { name: 'All files', extensions: ['*'] },
];

let mainWindow: BrowserWindow | undefined;
/** Backing files outside an image's folder that the user allowed; this launch only, never saved. */
const backingGrants = new BackingGrants();
const jobs = new JobManager(backingGrants.policy('refuse'));
const api = createApi(jobs, {
  backingGrants,
  recentFile: nodePath.join(app.getPath('userData'), 'recent.json'),
  async pickImage() {
    const options: OpenDialogOptions = { title: 'Open a disk image', properties: ['openFile'], filters: IMAGE_FILTERS };
    const r = mainWindow ? await dialog.showOpenDialog(mainWindow, options) : await dialog.showOpenDialog(options);
    return r.canceled ? null : (r.filePaths[0] ?? null);
  },
  async pickTarget(suggestedName: string) {
    const options: SaveDialogOptions = { title: 'Save the new image as', defaultPath: suggestedName, properties: ['createDirectory', 'showOverwriteConfirmation'] };
    const r = mainWindow ? await dialog.showSaveDialog(mainWindow, options) : await dialog.showSaveDialog(options);
    return r.canceled || !r.filePath ? null : r.filePath;
  },
});

/** True when the URL is our own index.html; query and fragment do not matter. */
function isOurPage(url: string | undefined): boolean {
  if (!url) return false;
  try {
    const u = new URL(url);
    return u.protocol === 'file:' && u.host === INDEX_URL.host && u.pathname === INDEX_URL.pathname;
  } catch {
    return false;
  }
}

/** A call is honoured only from the top frame of our window showing our page, never from a subframe. */
function senderIsTrusted(event: IpcMainInvokeEvent): boolean {
  const frame = event.senderFrame;
  return !!frame && frame.parent === null && !!mainWindow && event.sender === mainWindow.webContents && isOurPage(frame.url);
}

/**
 * Binds the contract to IPC: every call arrives on one channel as (method, args), and callApi checks the method
 * and validates the arguments exactly as the browser host does. Job events go out on their own channel.
 */
function bindApi(): void {
  ipcMain.handle(API_CALL_CHANNEL, async (event: IpcMainInvokeEvent, method: unknown, args: unknown): Promise<IpcReply<unknown>> => {
    try {
      if (!senderIsTrusted(event)) throw new DiskError('EACCES', `${String(method).slice(0, 80)}: refused, the call did not come from diskwright's own window`);
      return { ok: true, result: await callApi(api, method, args) };
    } catch (err) {
      return { ok: false, error: errorDto(err) };
    }
  });
  jobs.onEvent((e: JobEvent) => {
    if (mainWindow && !mainWindow.isDestroyed()) mainWindow.webContents.send(JOB_EVENT_CHANNEL, e);
  });
}

function hardenSessions(): void {
  const ses = session.defaultSession;
  // The window asks for nothing: no camera, notifications, clipboard reading, …
  ses.setPermissionRequestHandler((_wc, _permission, callback) => callback(false));
  ses.setPermissionCheckHandler(() => false);
  ses.webRequest.onHeadersReceived((details, callback) => {
    callback({ responseHeaders: { ...details.responseHeaders, 'Content-Security-Policy': [CSP] } });
  });
}

function createWindow(): void {
  mainWindow = new BrowserWindow({
    width: 1280,
    height: 800,
    minWidth: 880,
    minHeight: 600,
    title: 'diskwright',
    backgroundColor: '#f4f5f7',
    show: false,
    autoHideMenuBar: true,
    webPreferences: {
      preload: PRELOAD,
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
      navigateOnDragDrop: false,
      spellcheck: false,
      devTools: !app.isPackaged,
    },
  });
  mainWindow.once('ready-to-show', () => mainWindow?.show());
  mainWindow.on('closed', () => {
    mainWindow = undefined;
  });
  void mainWindow.loadFile(RENDERER_INDEX);
}

app.enableSandbox();

// Every web contents, present and future: no navigation away from our page, no new windows, no webviews.
app.on('web-contents-created', (_event, contents) => {
  contents.on('will-navigate', (e) => e.preventDefault());
  contents.on('will-redirect', (e) => e.preventDefault());
  contents.on('will-attach-webview', (e) => e.preventDefault());
  contents.setWindowOpenHandler(() => ({ action: 'deny' }));
});

if (!app.requestSingleInstanceLock()) {
  app.quit();
} else {
  app.on('second-instance', () => {
    if (mainWindow) {
      if (mainWindow.isMinimized()) mainWindow.restore();
      mainWindow.focus();
    }
  });
  void app.whenReady().then(() => {
    hardenSessions();
    bindApi();
    createWindow();
    app.on('activate', () => {
      if (BrowserWindow.getAllWindows().length === 0) createWindow();
    });
  });
  app.on('window-all-closed', () => {
    if (process.platform !== 'darwin') app.quit();
  });
}
