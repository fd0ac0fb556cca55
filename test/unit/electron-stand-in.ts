/**
 * A recording stand-in for the `electron` module. Electron's binary cannot run on the machines these tests
 * run on, so the main process (dist/main's compiled main.js and preload.js) is loaded with this in its place:
 * every setting it makes and every handler it registers is recorded, and the tests drive the recorded
 * handlers as Electron would. What this proves is the configuration, not Electron's behaviour.
 */
import { createRequire } from 'node:module';

type Fn = (...args: any[]) => any;  

/** An EventEmitter enough for on/once/emit, keeping every listener so tests can find and call them. */
export class Recorder {
  readonly listeners = new Map<string, Fn[]>();
  on(event: string, fn: Fn): this {
    this.listeners.set(event, [...(this.listeners.get(event) ?? []), fn]);
    return this;
  }
  once(event: string, fn: Fn): this {
    return this.on(event, fn);
  }
  emit(event: string, ...args: unknown[]): unknown[] {
    return (this.listeners.get(event) ?? []).map((fn) => fn(...args));
  }
  has(event: string): boolean {
    return (this.listeners.get(event)?.length ?? 0) > 0;
  }
}

/** An event object: records preventDefault. */
export function fakeEvent(): { prevented: boolean; preventDefault(): void } {
  return {
    prevented: false,
    preventDefault() {
      this.prevented = true;
    },
  };
}

export class FakeWebContents extends Recorder {
  readonly sent: Array<[string, unknown]> = [];
  windowOpenHandler: Fn | undefined;
  send(channel: string, payload: unknown): void {
    this.sent.push([channel, payload]);
  }
  setWindowOpenHandler(fn: Fn): void {
    this.windowOpenHandler = fn;
  }
}

export class FakeSession extends Recorder {
  permissionRequest: Fn | undefined;
  permissionCheck: Fn | undefined;
  devicePermission: Fn | undefined;
  displayMedia: Fn | undefined;
  bluetoothPairing: Fn | undefined;
  setPermissionRequestHandler(fn: Fn) {
    this.permissionRequest = fn;
  }
  setPermissionCheckHandler(fn: Fn) {
    this.permissionCheck = fn;
  }
  setDevicePermissionHandler(fn: Fn) {
    this.devicePermission = fn;
  }
  setDisplayMediaRequestHandler(fn: Fn) {
    this.displayMedia = fn;
  }
  setBluetoothPairingHandler(fn: Fn) {
    this.bluetoothPairing = fn;
  }
}

export interface StandInOptions {
  userData: string;
  /** What requestSingleInstanceLock answers (false: another instance runs). */
  lock?: boolean;
  /** What the native open dialog picks. */
  dialogPick?: string | null;
}

export function electronStandIn(opts: StandInOptions) {
  let markReady!: () => void;
  const readyPromise = new Promise<void>((r) => (markReady = r));
  const rec = {
    isReady: false,
    sandboxEnabled: false,
    lockRequested: false,
    quit: false,
    schemes: [] as Array<{ scheme: string; privileges: Record<string, boolean> }>,
    schemesRegisteredBeforeReady: undefined as boolean | undefined,
    protocolHandlers: new Map<string, Fn>(),
    ipcHandlers: new Map<string, Fn>(),
    menus: [] as unknown[][],
    recentDocuments: [] as string[],
    windows: [] as FakeWindow[],
  };
  const app = Object.assign(new Recorder(), {
    isPackaged: false,
    getPath: (name: string) => {
      if (name !== 'userData') throw new Error(`the stand-in knows only userData, not ${name}`);
      return opts.userData;
    },
    enableSandbox: () => {
      rec.sandboxEnabled = true;
    },
    requestSingleInstanceLock: () => {
      rec.lockRequested = true;
      return opts.lock ?? true;
    },
    quit: () => {
      rec.quit = true;
    },
    whenReady: () => readyPromise,
    addRecentDocument: (p: string) => {
      rec.recentDocuments.push(p);
    },
  });
  class FakeWindow extends Recorder {
    static getAllWindows = () => rec.windows.filter((w) => !w.destroyed);
    readonly webContents = new FakeWebContents();
    loadedUrl: string | undefined;
    maximized = false;
    focused = false;
    destroyed = false;
    bounds = { x: 0, y: 0, width: 0, height: 0 };
    constructor(readonly options: Record<string, any>) {  
      super();
      if (!rec.isReady) throw new Error('a BrowserWindow was made before ready');
      this.bounds = { x: options.x ?? 10, y: options.y ?? 10, width: options.width, height: options.height };
      rec.windows.push(this);
      app.emit('web-contents-created', fakeEvent(), this.webContents);
    }
    loadURL(url: string) {
      this.loadedUrl = url;
      return Promise.resolve();
    }
    maximize() {
      this.maximized = true;
    }
    isMaximized() {
      return this.maximized;
    }
    show() {}
    isMinimized() {
      return false;
    }
    restore() {}
    focus() {
      this.focused = true;
    }
    isDestroyed() {
      return this.destroyed;
    }
    getNormalBounds() {
      return this.bounds;
    }
    /** Closes as a person would: close, then closed. */
    closeNow() {
      this.emit('close', fakeEvent());
      this.destroyed = true;
      this.emit('closed');
    }
  }
  const session = { defaultSession: new FakeSession() };
  const module = {
    app,
    session,
    BrowserWindow: FakeWindow,
    protocol: {
      registerSchemesAsPrivileged(schemes: typeof rec.schemes) {
        rec.schemes.push(...schemes);
        rec.schemesRegisteredBeforeReady = !rec.isReady;
      },
      handle(scheme: string, fn: Fn) {
        rec.protocolHandlers.set(scheme, fn);
      },
    },
    ipcMain: {
      handle(channel: string, fn: Fn) {
        rec.ipcHandlers.set(channel, fn);
      },
    },
    Menu: {
      buildFromTemplate: (template: unknown[]) => ({ template }),
      setApplicationMenu: (menu: { template: unknown[] }) => {
        rec.menus.push(menu.template);
      },
    },
    dialog: {
      showOpenDialog: async () => (opts.dialogPick ? { canceled: false, filePaths: [opts.dialogPick] } : { canceled: true, filePaths: [] }),
      showSaveDialog: async () => ({ canceled: true }),
    },
    screen: { getAllDisplays: () => [{ workArea: { x: 0, y: 0, width: 1920, height: 1080 } }] },
  };
  return {
    module,
    rec,
    FakeWindow,
    /** Electron's 'ready': whenReady resolves. */
    async ready(): Promise<void> {
      rec.isReady = true;
      markReady();
      await readyPromise;
      await new Promise((r) => setImmediate(r));
    },
  };
}
export type ElectronStandIn = ReturnType<typeof electronStandIn>;

/**
 * Loads a compiled module of dist/main with `electron` resolved to `standIn` (fresh each time: the module and
 * the ones it loads from src-main/electron are evaluated again).
 */
export function loadWithElectron(file: string, standIn: object): unknown {
  const req = createRequire(__filename);
  const Module = req('node:module') as { _load: Fn };
  for (const key of Object.keys(req.cache)) if (key.includes(`${'/'}electron${'/'}`) || key === file) delete req.cache[key];
  const original = Module._load;
  Module._load = function (request: string, ...rest: unknown[]) {
    if (request === 'electron') return standIn;
    return original.call(this, request, ...rest);
  };
  try {
    return req(file);
  } finally {
    Module._load = original;
  }
}
