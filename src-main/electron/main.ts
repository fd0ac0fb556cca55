/**
 * The Electron app: one window showing the renderer, served from app://diskwright/ (protocol.ts), with the
 * contract bound to IPC. The renderer is treated as untrusted: it runs sandboxed without Node, may not navigate
 * or open windows, is granted no permission or device (security.ts), and every IPC call is checked for its
 * sender and validated before a service sees it. The desktop conventions: one instance (a second launch hands
 * its files to the first), files opened by the system (open-file, a path on the command line) and the native
 * menu (menu.ts) routed to the window as DesktopCommands, the window's size and place kept (window-state.ts).
 */
import { app, BrowserWindow, dialog, ipcMain, Menu, protocol, screen, session, type IpcMainInvokeEvent, type OpenDialogOptions, type SaveDialogOptions } from 'electron';
import * as nodePath from 'node:path';
import type { IpcReply, JobEvent } from '../../src-shared/api';
import { API_CALL_CHANNEL, JOB_EVENT_CHANNEL } from '../../src-shared/api';
import { DESKTOP_COMMAND_CHANNEL, type DesktopCommand } from '../../src-shared/desktop';
import { BackingGrants } from '../block/backing-path';
import { DiskError } from '../block/errors';
import { JobManager } from '../services/jobs';
import { callApi, createApi, errorDto } from '../api';
import { forgetAllKeys } from '../keyring';
import { formatSummaries, preloadDrivers } from '../registry';
import { menuTemplate } from './menu';
import { imagePathsFromArgv, OpenQueue } from './open-requests';
import { APP_INDEX_URL, handleAppProtocol, isAppPage, registerAppScheme } from './protocol';
import { denyPermissions, lockNavigation } from './security';
import { loadWindowState, MIN_HEIGHT, MIN_WIDTH, saveWindowState } from './window-state';

/** dist/main/src-main/electron → dist/renderer and dist/main/src-main/preload.js. */
const RENDERER_DIR = nodePath.join(__dirname, '..', '..', '..', 'renderer');
const PRELOAD = nodePath.join(__dirname, '..', 'preload.js');
const WINDOW_STATE_FILE = nodePath.join(app.getPath('userData'), 'window-state.json');
const isMac = process.platform === 'darwin';

/** The open dialog's filter, from the drivers' extensions. */
const IMAGE_FILTERS: OpenDialogOptions['filters'] = [
  { name: 'Disk images', extensions: [...new Set(formatSummaries().flatMap((f) => f.extensions))] },
  { name: 'All files', extensions: ['*'] },
];

let mainWindow: BrowserWindow | undefined;
/** No window can be made before ready; open requests that come earlier wait in `opens`. */
let appReady = false;
/** Files the system asked us to open, held until the window can take them. */
const opens = new OpenQueue();
/** Backing files outside an image's folder that the user allowed; this launch only, never saved. */
const backingGrants = new BackingGrants();
const jobs = new JobManager(backingGrants.policy('refuse'));

async function pickImage(): Promise<string | null> {
  const options: OpenDialogOptions = { title: 'Open a disk image', properties: ['openFile'], filters: IMAGE_FILTERS };
  const r = mainWindow ? await dialog.showOpenDialog(mainWindow, options) : await dialog.showOpenDialog(options);
  return r.canceled ? null : (r.filePaths[0] ?? null);
}

const api = createApi(jobs, {
  backingGrants,
  recentFile: nodePath.join(app.getPath('userData'), 'recent.json'),
  pickImage,
  async pickTarget(suggestedName: string) {
    const options: SaveDialogOptions = { title: 'Save the new image as', defaultPath: suggestedName, properties: ['createDirectory', 'showOverwriteConfirmation'] };
    const r = mainWindow ? await dialog.showSaveDialog(mainWindow, options) : await dialog.showSaveDialog(options);
    return r.canceled || !r.filePath ? null : r.filePath;
  },
});

/** A call is honoured only from the top frame of our window showing our page, never from a subframe. */
function senderIsTrusted(event: IpcMainInvokeEvent): boolean {
  const frame = event.senderFrame;
  return !!frame && frame.parent === null && !!mainWindow && event.sender === mainWindow.webContents && isAppPage(frame.url);
}

/**
 * Binds the contract to IPC: every call arrives on one channel as (method, args), and callApi checks the method
 * and validates the arguments exactly as the browser host does. Job events go out on their own channel.
 */
function bindApi(): void {
  ipcMain.handle(API_CALL_CHANNEL, async (event: IpcMainInvokeEvent, method: unknown, args: unknown): Promise<IpcReply<unknown>> => {
    try {
      if (!senderIsTrusted(event)) throw new DiskError('EACCES', `${String(method).slice(0, 80)}: refused, the call did not come from diskwright's own window`);
      const result = await callApi(api, method, args);
      // An image opened: the system's recent documents and File → Open Recent learn of it.
      if (method === 'inspect' && Array.isArray(args) && typeof args[0] === 'string') {
        app.addRecentDocument(nodePath.resolve(args[0]));
        void refreshMenu();
      }
      return { ok: true, result };
    } catch (err) {
      return { ok: false, error: errorDto(err) };
    }
  });
  jobs.onEvent((e: JobEvent) => {
    if (mainWindow && !mainWindow.isDestroyed()) mainWindow.webContents.send(JOB_EVENT_CHANNEL, e);
  });
}

/** A menu command or an open request to the window; a closed window (macOS) is opened again first. */
function sendCommand(command: DesktopCommand): void {
  if (command.command === 'open-path') {
    opens.push(command.path);
    if (!mainWindow && appReady) createWindow();
    return;
  }
  if (!mainWindow) {
    if (appReady) createWindow();
  } else mainWindow.webContents.send(DESKTOP_COMMAND_CHANNEL, command);
}

async function refreshMenu(): Promise<void> {
  const recent = await api.recentImages().catch(() => [] as string[]);
  const template = menuTemplate({
    send: sendCommand,
    open: () => {
      void pickImage().then((path) => {
        if (path) sendCommand({ command: 'open-path', path });
      });
    },
    recent,
    isMac,
    packaged: app.isPackaged,
  });
  Menu.setApplicationMenu(Menu.buildFromTemplate(template));
}

function focusWindow(): void {
  if (!mainWindow) return;
  if (mainWindow.isMinimized()) mainWindow.restore();
  mainWindow.focus();
}

function createWindow(): void {
  const state = loadWindowState(WINDOW_STATE_FILE, screen.getAllDisplays().map((d) => d.workArea));
  const win = new BrowserWindow({
    width: state.width,
    height: state.height,
    ...(state.x !== undefined && state.y !== undefined ? { x: state.x, y: state.y } : {}),
    minWidth: MIN_WIDTH,
    minHeight: MIN_HEIGHT,
    title: 'diskwright',
    backgroundColor: '#f4f5f7',
    show: false,
    webPreferences: {
      preload: PRELOAD,
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      experimentalFeatures: false,
      webviewTag: false,
      navigateOnDragDrop: false,
      safeDialogs: true,
      spellcheck: false,
      devTools: !app.isPackaged,
    },
  });
  mainWindow = win;
  if (state.maximized) win.maximize();
  win.once('ready-to-show', () => win.show());
  // The page is up (its listeners are registered while its modules run): files waiting to open go to it.
  win.webContents.on('did-finish-load', () => {
    opens.ready((path) => win.webContents.send(DESKTOP_COMMAND_CHANNEL, { command: 'open-path', path } satisfies DesktopCommand));
  });
  win.on('close', () => {
    void saveWindowState(WINDOW_STATE_FILE, win.getNormalBounds(), win.isMaximized());
  });
  win.on('closed', () => {
    opens.notReady();
    if (mainWindow === win) mainWindow = undefined;
  });
  void win.loadURL(APP_INDEX_URL);
}

// Before ready, as Electron requires: app:// is a standard, secure scheme (protocol.ts).
registerAppScheme(protocol);
app.enableSandbox();

// Every web contents, present and future: no navigation in any frame, no redirects, new windows or webviews.
app.on('web-contents-created', (_event, contents) => lockNavigation(contents));

if (!app.requestSingleInstanceLock()) {
  app.quit();
} else {
  for (const path of imagePathsFromArgv(process.argv, process.cwd(), app.isPackaged)) opens.push(path);
  // macOS: a double-click on an associated file, or a file dropped on the Dock icon (may come before ready).
  app.on('open-file', (event, path) => {
    event.preventDefault();
    sendCommand({ command: 'open-path', path });
    focusWindow();
  });
  // A second launch (a double-click on Linux or Windows): its files open here, and this window comes forward.
  app.on('second-instance', (_event, argv, workingDirectory) => {
    for (const path of imagePathsFromArgv(argv, workingDirectory, app.isPackaged)) sendCommand({ command: 'open-path', path });
    focusWindow();
  });
  void app.whenReady().then(() => {
    appReady = true;
    handleAppProtocol(protocol, RENDERER_DIR);
    denyPermissions(session.defaultSession);
    bindApi();
    void refreshMenu();
    if (!mainWindow) createWindow();
    // The format drivers' code loads while the window opens, not when the first image is opened.
    setImmediate(() => void preloadDrivers().catch(() => undefined));
    app.on('activate', () => {
      if (BrowserWindow.getAllWindows().length === 0) createWindow();
    });
  });
  app.on('window-all-closed', () => {
    if (!isMac) app.quit();
  });
  // Passphrases live in the main process only while the app runs: wiped (not just dropped) on the way out.
  app.on('will-quit', () => forgetAllKeys());
}
