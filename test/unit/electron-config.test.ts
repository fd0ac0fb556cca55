/**
 * The desktop app's configuration, checked without Electron: the compiled main process (dist/main) is loaded
 * with a recording stand-in for the electron module (electron-stand-in.ts), and the packaging configuration
 * (electron-builder.yml) is read and validated by electron-builder's own schema. These tests check what the
 * main process asks of Electron — webPreferences, the app:// protocol, the handlers it registers, the menu,
 * the fuses — not that Electron honours it.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { ROOT, scratch } from '../helpers';
import { electronStandIn, fakeEvent, loadWithElectron, type ElectronStandIn, type FakeWebContents } from './electron-stand-in';

const DIST = join(ROOT, 'dist', 'main', 'src-main');
const MAIN = join(DIST, 'electron', 'main.js');
const PRELOAD = join(DIST, 'preload.js');
const RENDERER = join(ROOT, 'dist', 'renderer');
const work = scratch('dw-electron-config-');

type Fn = (...args: any[]) => any;  
interface MenuItem {
  label?: string;
  role?: string;
  accelerator?: string;
  sublabel?: string;
  enabled?: boolean;
  click?: Fn;
  submenu?: MenuItem[];
}

function requireBuilt(): void {
  assert.ok(existsSync(MAIN) && existsSync(PRELOAD), `${MAIN} is missing: build first (node scripts/build.mjs; the Electron code is compiled when its types are at hand)`);
}

/** The main process loaded and made ready, with its window. */
async function startMain(opts: { lock?: boolean; dialogPick?: string | null; userData?: string } = {}): Promise<ElectronStandIn> {
  requireBuilt();
  const standIn = electronStandIn({ userData: opts.userData ?? work.path(`user-${Math.random().toString(36).slice(2)}`), lock: opts.lock, dialogPick: opts.dialogPick });
  loadWithElectron(MAIN, standIn.module);
  await standIn.ready();
  return standIn;
}

function commands(wc: FakeWebContents): unknown[] {
  return wc.sent.filter(([channel]) => channel === 'desktop-command').map(([, c]) => c);
}

function findItem(menu: MenuItem[], ...labels: string[]): MenuItem {
  let items = menu;
  let found: MenuItem | undefined;
  for (const label of labels) {
    // '&File' has a mnemonic; '&&' is a literal '&'.
    found = items.find((i) => i.label?.replace(/&(&?)/g, '$1') === label);
    assert.ok(found, `menu item ${labels.join(' → ')}: no ${label} in ${items.map((i) => i.label ?? i.role).join(', ')}`);
    items = found.submenu ?? [];
  }
  return found!;
}

const lastMenu = (s: ElectronStandIn) => s.rec.menus[s.rec.menus.length - 1] as MenuItem[];

describe('Electron main process configuration (a recording stand-in for electron, not Electron itself)', () => {
  let s: ElectronStandIn;
  before(async () => {
    s = await startMain();
  });

  test('app:// is registered privileged and secure before ready, with no other privilege', () => {
    assert.equal(s.rec.schemesRegisteredBeforeReady, true);
    assert.equal(s.rec.schemes.length, 1);
    const [app] = s.rec.schemes;
    assert.equal(app.scheme, 'app');
    assert.equal(app.privileges.standard, true);
    assert.equal(app.privileges.secure, true);
    for (const p of ['bypassCSP', 'allowServiceWorkers', 'supportFetchAPI', 'corsEnabled', 'stream']) assert.notEqual(app.privileges[p], true, p);
    assert.equal(s.rec.sandboxEnabled, true, 'app.enableSandbox()');
    assert.equal(s.rec.lockRequested, true, 'a single-instance lock');
  });

  test('the window: sandboxed, isolated, no Node, the preload from dist, loaded from app://', () => {
    assert.equal(s.rec.windows.length, 1);
    const [win] = s.rec.windows;
    assert.equal(win.loadedUrl, 'app://diskwright/index.html');
    const wp = win.options.webPreferences as Record<string, unknown>;
    assert.deepEqual(
      {
        contextIsolation: wp.contextIsolation,
        sandbox: wp.sandbox,
        nodeIntegration: wp.nodeIntegration,
        nodeIntegrationInWorker: wp.nodeIntegrationInWorker,
        nodeIntegrationInSubFrames: wp.nodeIntegrationInSubFrames,
        webSecurity: wp.webSecurity,
        allowRunningInsecureContent: wp.allowRunningInsecureContent,
        experimentalFeatures: wp.experimentalFeatures,
        webviewTag: wp.webviewTag,
        navigateOnDragDrop: wp.navigateOnDragDrop,
      },
      {
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
      },
    );
    assert.equal(wp.preload, PRELOAD);
    assert.ok(existsSync(String(wp.preload)));
    assert.equal(wp.devTools, true, 'devtools while developing (isPackaged false); the packaged app has none');
  });

  test('the app:// handler serves dist/renderer only, with the CSP header (connect-src none)', async () => {
    const handle = s.rec.protocolHandlers.get('app');
    assert.ok(handle, 'protocol.handle(app)');
    const ask = (url: string, method = 'GET') => handle({ url, method }) as Promise<Response>;
    const index = await ask('app://diskwright/index.html');
    assert.equal(index.status, 200);
    assert.equal(await index.text(), readFileSync(join(RENDERER, 'index.html'), 'utf8'));
    assert.match(String(index.headers.get('content-type')), /^text\/html/);
    const csp = String(index.headers.get('content-security-policy'));
    assert.match(csp, /connect-src 'none'/);
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-|\*/);
    assert.equal(index.headers.get('x-content-type-options'), 'nosniff');
    const script = /src="\.\/(assets\/[^"]+\.js)"/.exec(await (await ask('app://diskwright/')).text())?.[1];
    assert.ok(script);
    const js = await ask(`app://diskwright/${script}`);
    assert.equal(js.status, 200);
    assert.match(String(js.headers.get('content-security-policy')), /connect-src 'none'/);
    for (const bad of [
      'app://diskwright/../package.json',
      'app://diskwright/%2e%2e/%2e%2e/package.json',
      'app://diskwright/assets/..%2f..%2f..%2fpackage.json',
      'app://diskwright/..%5c..%5cpackage.json',
      'app://diskwright/a%00b',
      'app://diskwright/%zz',
      'app://elsewhere/index.html',
      'app://diskwright/.hidden',
      'app://diskwright/assets',
      'app://diskwright/nothing-here.js',
    ]) {
      assert.equal((await ask(bad)).status, 404, bad);
    }
    assert.equal((await ask('app://diskwright/index.html', 'POST')).status, 405);
  });

  test('a symlink inside the renderer folder that leads out of it is not followed', async () => {
    const { serveAppRequest } = loadWithElectron(join(DIST, 'electron', 'protocol.js'), s.module) as { serveAppRequest: Fn };
    const dir = work.path('renderer-copy');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'index.html'), '<p>ours</p>');
    writeFileSync(work.path('secret.txt'), 'outside');
    symlinkSync(work.path('secret.txt'), join(dir, 'leak.txt'));
    assert.equal((await serveAppRequest(dir, { url: 'app://diskwright/index.html', method: 'GET' })).status, 200);
    assert.equal((await serveAppRequest(dir, { url: 'app://diskwright/leak.txt', method: 'GET' })).status, 404);
  });

  test('every permission, device chooser and screen capture is denied', async () => {
    const ses = s.module.session.defaultSession;
    for (const permission of ['media', 'display-capture', 'notifications', 'geolocation', 'clipboard-read', 'hid', 'serial', 'usb', 'fullscreen', 'openExternal', 'midi', 'idle-detection']) {
      let answer: boolean | undefined;
      ses.permissionRequest!({}, permission, (ok: boolean) => (answer = ok), {});
      assert.equal(answer, false, `request ${permission}`);
      assert.equal(ses.permissionCheck!({}, permission, 'app://diskwright', {}), false, `check ${permission}`);
    }
    for (const deviceType of ['hid', 'serial', 'usb']) assert.equal(ses.devicePermission!({ deviceType, origin: 'app://diskwright' }), false, deviceType);
    let streams: unknown;
    ses.displayMedia!({}, (x: unknown) => (streams = x));
    assert.deepEqual(streams, {}, 'no video source: getDisplayMedia fails');
    let pairing: unknown;
    ses.bluetoothPairing!({}, (x: unknown) => (pairing = x));
    assert.deepEqual(pairing, { confirmed: false });
    for (const [event, args, denial] of [
      ['select-hid-device', [{ deviceList: [{ deviceId: 'h1' }] }], null],
      ['select-serial-port', [[{ portId: 'p1' }], {}], ''],
      ['select-usb-device', [{ deviceList: [{ deviceId: 'u1' }] }], undefined],
    ] as const) {
      assert.ok(ses.has(event), event);
      const e = fakeEvent();
      let chosen: unknown = 'not called';
      ses.emit(event, e, ...args, (id?: unknown) => (chosen = id));
      assert.equal(e.prevented, true, `${event}: the default chooser is not shown`);
      assert.equal(chosen, denial, `${event}: no device`);
    }
  });

  test('no frame navigates, redirects, opens a window or attaches a webview', () => {
    const wc = s.rec.windows[0].webContents;
    for (const event of ['will-navigate', 'will-frame-navigate', 'will-redirect', 'will-attach-webview']) {
      assert.ok(wc.has(event), `${event} is guarded`);
      const e = fakeEvent();
      wc.emit(event, e, 'https://example.com/');
      assert.equal(e.prevented, true, event);
    }
    assert.deepEqual(wc.windowOpenHandler!({ url: 'https://example.com/' }), { action: 'deny' });
    const e = fakeEvent();
    let device: unknown = 'not called';
    wc.emit('select-bluetooth-device', e, [{ deviceId: 'b1' }], (id: unknown) => (device = id));
    assert.equal(e.prevented, true);
    assert.equal(device, '');
  });

  test('IPC calls are answered only for the top frame of our window showing app://diskwright', async () => {
    const handler = s.rec.ipcHandlers.get('api-call');
    assert.ok(handler);
    const wc = s.rec.windows[0].webContents;
    const top = { parent: null, url: 'app://diskwright/index.html#/inspect?path=%2Fx' };
    const ok = await handler({ sender: wc, senderFrame: top }, 'formats', []);
    assert.equal(ok.ok, true);
    assert.ok(Array.isArray(ok.result) && ok.result.length > 5);
    for (const [what, event] of [
      ['a file:// page', { sender: wc, senderFrame: { parent: null, url: `file://${RENDERER}/index.html` } }],
      ['another app:// host', { sender: wc, senderFrame: { parent: null, url: 'app://evil/index.html' } }],
      ['a subframe', { sender: wc, senderFrame: { parent: top, url: top.url } }],
      ['another web contents', { sender: {}, senderFrame: top }],
      ['no frame', { sender: wc, senderFrame: null }],
    ] as const) {
      const r = await handler(event, 'formats', []);
      assert.equal(r.ok, false, what);
      assert.equal(r.error.code, 'EACCES', what);
    }
    const bad = await handler({ sender: wc, senderFrame: top }, 'inspect', ['']);
    assert.equal(bad.ok, false);
    assert.equal(bad.error.code, 'EINVAL');
  });

  test('the native menu: File, Edit, View, Help with the usual accelerators, routed to the window', async () => {
    const menu = lastMenu(s);
    assert.deepEqual(
      menu.map((m) => (m.label ?? m.role)?.replace(/&(&?)/g, '$1')),
      process.platform === 'darwin' ? ['appMenu', 'File', 'Edit', 'View', 'windowMenu', 'Help'] : ['File', 'Edit', 'View', 'Help'],
    );
    assert.equal(findItem(menu, 'File', 'New Image…').accelerator, 'CmdOrCtrl+N');
    assert.equal(findItem(menu, 'File', 'Open…').accelerator, 'CmdOrCtrl+O');
    assert.ok(findItem(menu, 'File', 'Convert…').accelerator);
    assert.ok(findItem(menu, 'File', 'Check & Repair…').accelerator);
    assert.deepEqual(findItem(menu, 'File', 'Open Recent').submenu!.map((i) => [i.label, i.enabled]), [['No recent images', false]]);
    const accelerators = menu.flatMap((m) => m.submenu ?? []).map((i) => i.accelerator).filter(Boolean);
    assert.equal(new Set(accelerators).size, accelerators.length, `no accelerator twice: ${accelerators.join(' ')}`);
    assert.deepEqual(findItem(menu, 'Edit').submenu!.map((i) => i.role).filter(Boolean), ['undo', 'redo', 'cut', 'copy', 'paste', 'selectAll']);
    assert.ok(findItem(menu, 'View').submenu!.some((i) => i.role === 'togglefullscreen'));
    assert.ok(findItem(menu, 'Help').submenu!.some((i) => i.role === 'about'));

    const wc = s.rec.windows[0].webContents;
    wc.sent.length = 0;
    findItem(menu, 'File', 'New Image…').click!();
    findItem(menu, 'File', 'Convert…').click!();
    findItem(menu, 'File', 'Check & Repair…').click!();
    assert.deepEqual(commands(wc), [{ command: 'new-image' }, { command: 'convert' }, { command: 'check-repair' }]);
  });

  test('an image opened through IPC joins Open Recent and the system’s recent documents; choosing it opens it on Inspect', async () => {
    const image = work.path('recent.raw');
    writeFileSync(image, Buffer.alloc(1 << 20));
    const wc = s.rec.windows[0].webContents;
    wc.emit('did-finish-load');
    const r = await s.rec.ipcHandlers.get('api-call')!({ sender: wc, senderFrame: { parent: null, url: 'app://diskwright/index.html' } }, 'inspect', [image, 'raw']);
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.deepEqual(s.rec.recentDocuments, [image]);
    for (let i = 0; i < 50 && !findItem(lastMenu(s), 'File', 'Open Recent').submenu!.some((m) => m.sublabel === image); i++) await new Promise((res) => setTimeout(res, 10));
    const item = findItem(lastMenu(s), 'File', 'Open Recent').submenu!.find((m) => m.sublabel === image);
    assert.ok(item, 'listed under Open Recent');
    assert.equal(item.label, 'recent.raw');
    wc.sent.length = 0;
    item.click!();
    assert.deepEqual(commands(wc), [{ command: 'open-path', path: image }]);
  });

  test('open-file (macOS) and a second launch’s files go to Inspect; flags and missing files are not paths', () => {
    const image = work.path('double-clicked.qcow2');
    writeFileSync(image, 'x');
    const [win] = s.rec.windows;
    const wc = win.webContents;
    wc.sent.length = 0;
    const e = fakeEvent();
    s.module.app.emit('open-file', e, image);
    assert.equal(e.prevented, true, 'open-file is handled');
    win.focused = false;
    s.module.app.emit('second-instance', fakeEvent(), ['/usr/bin/diskwright', '.', '--no-sandbox', 'double-clicked.qcow2', 'missing.vmdk', work.dir], work.dir);
    assert.deepEqual(commands(wc), [
      { command: 'open-path', path: image },
      { command: 'open-path', path: image },
    ]);
    assert.equal(win.focused, true, 'the running window comes forward');
  });

  test('quitting wipes every passphrase the main process holds (will-quit)', () => {
    // The keyring module instance the compiled main uses (dist/), not the sources'.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const keyring = require('../../dist/main/src-main/keyring.js') as typeof import('../../src-main/keyring');
    const image = work.path('locked.qcow2');
    keyring.rememberKey(image, Buffer.from('a passphrase'));
    const held = keyring.keyFor(image)!;
    s.module.app.emit('will-quit', fakeEvent());
    assert.equal(keyring.keyFor(image), undefined, 'no key held after quitting');
    assert.ok(held.every((b) => b === 0), 'the held bytes are wiped');
  });

  test('the window’s size and place are kept in userData and used by the next window', async () => {
    const [win] = s.rec.windows;
    win.bounds = { x: 200, y: 120, width: 1000, height: 700 };
    win.closeNow();
    const file = join(String(s.module.app.getPath('userData')), 'window-state.json');
    for (let i = 0; i < 50 && !existsSync(file); i++) await new Promise((res) => setTimeout(res, 10));
    assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), { width: 1000, height: 700, x: 200, y: 120, maximized: false });
    // macOS keeps the app running with no window: activate makes one, where the last one was.
    s.module.app.emit('activate');
    const next = s.rec.windows[1];
    assert.ok(next, 'a new window');
    assert.deepEqual([next.options.x, next.options.y, next.options.width, next.options.height], [200, 120, 1000, 700]);
    assert.equal(next.options.minWidth, 880);
  });
});

describe('Electron main process configuration: launch paths (stand-in)', () => {
  test('a file on the command line waits for the page and then opens on Inspect', async () => {
    const image = work.path('from-argv.vmdk');
    writeFileSync(image, 'x');
    const argv = process.argv;
    process.argv = [argv[0], '.', image, '--inspect'];
    let s: ElectronStandIn;
    try {
      s = await startMain();
    } finally {
      process.argv = argv;
    }
    const wc = s.rec.windows[0].webContents;
    assert.deepEqual(commands(wc), [], 'nothing is sent before the page has loaded');
    wc.emit('did-finish-load');
    assert.deepEqual(commands(wc), [{ command: 'open-path', path: image }]);
  });

  test('a second instance hands over and quits without making a window', async () => {
    requireBuilt();
    const standIn = electronStandIn({ userData: work.path('user-second'), lock: false });
    loadWithElectron(MAIN, standIn.module);
    await standIn.ready();
    assert.equal(standIn.rec.quit, true);
    assert.equal(standIn.rec.windows.length, 0);
  });

  test('a saved window state that is malformed, oversized or off every display is not trusted', async () => {
    const { loadWindowState, validWindowState } = loadWithElectron(join(DIST, 'electron', 'window-state.js'), {}) as { loadWindowState: Fn; validWindowState: Fn };
    const displays = [{ x: 0, y: 0, width: 1920, height: 1080 }];
    const dflt = { width: 1280, height: 800, maximized: false };
    assert.deepEqual(validWindowState({ width: 1000, height: 700, x: 5, y: 5, maximized: true }, displays), { width: 1000, height: 700, x: 5, y: 5, maximized: true });
    assert.deepEqual(validWindowState({ width: 1000, height: 700, x: 5000, y: 5, maximized: false }, displays), { width: 1000, height: 700, maximized: false }, 'off-screen: size kept, place dropped');
    assert.deepEqual(validWindowState({ width: 1000, height: 700, x: -990, y: 5 }, displays), { width: 1000, height: 700, maximized: false }, 'only a sliver on screen');
    for (const bad of [null, 'x', [], { width: 1e9, height: 700 }, { width: 100, height: 700 }, { width: 1000.5, height: 700 }, { width: '1000', height: 700 }, { width: 1000 }, { width: NaN, height: NaN }]) {
      assert.deepEqual(validWindowState(bad, displays), dflt, JSON.stringify(bad));
    }
    const file = work.path('state.json');
    writeFileSync(file, '{"width": 1000, "height": 700' + ' '.repeat(5000) + '}');
    assert.deepEqual(loadWindowState(file, displays), dflt, 'an oversized file is not read');
    writeFileSync(file, '{not json');
    assert.deepEqual(loadWindowState(file, displays), dflt);
    assert.deepEqual(loadWindowState(work.path('none.json'), displays), dflt);
  });

  test('the preload exposes call, onJobEvent, pathForFile (webUtils) and onDesktopCommand, and nothing else', () => {
    requireBuilt();
    const exposed: Record<string, Record<string, Fn>> = {};
    const listeners = new Map<string, Fn>();
    const invoked: unknown[][] = [];
    const stand = {
      contextBridge: { exposeInMainWorld: (key: string, api: Record<string, Fn>) => (exposed[key] = api) },
      ipcRenderer: {
        invoke: async (...args: unknown[]) => {
          invoked.push(args);
          return { ok: true, result: 'answer' };
        },
        on: (channel: string, fn: Fn) => listeners.set(channel, fn),
        removeListener: (channel: string) => listeners.delete(channel),
      },
      webUtils: { getPathForFile: (f: { name: string }) => `/picked/${f.name}` },
    };
    loadWithElectron(PRELOAD, stand);
    assert.deepEqual(Object.keys(exposed), ['diskwright']);
    const bridge = exposed.diskwright;
    assert.deepEqual(Object.keys(bridge).sort(), ['call', 'onDesktopCommand', 'onJobEvent', 'pathForFile']);
    assert.equal(bridge.pathForFile({ name: 'disk.vdi' }), '/picked/disk.vdi');
    const got: unknown[] = [];
    const off = bridge.onDesktopCommand((c: unknown) => got.push(c));
    listeners.get('desktop-command')!({}, { command: 'new-image' });
    assert.deepEqual(got, [{ command: 'new-image' }]);
    off();
    assert.equal(listeners.has('desktop-command'), false);
    void bridge.call('formats', []);
    assert.deepEqual(invoked, [['api-call', 'formats', []]]);
  });
});

describe('packaging configuration (electron-builder.yml)', () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const yaml = require('js-yaml') as { load(text: string): unknown };
  const config = () => yaml.load(readFileSync(join(ROOT, 'electron-builder.yml'), 'utf8')) as Record<string, any>;  

  test('electron-builder accepts it (its own schema)', async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { validateConfiguration } = require('app-builder-lib/out/util/config/config') as { validateConfiguration: Fn };
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { DebugLogger } = require('builder-util') as { DebugLogger: new (enabled: boolean) => unknown };
    await validateConfiguration(config(), new DebugLogger(false));
    const broken = config();
    broken.electronFuses.runAsNode = 'no';
    await assert.rejects(validateConfiguration(broken, new DebugLogger(false)), /electronFuses\.runAsNode should be a boolean/, 'the schema check can fail');
  });

  test('the fuses: no running as Node, no NODE_OPTIONS or --inspect, only the checked app.asar, cookies encrypted', () => {
    assert.deepEqual(config().electronFuses, {
      runAsNode: false,
      enableNodeOptionsEnvironmentVariable: false,
      enableNodeCliInspectArguments: false,
      enableEmbeddedAsarIntegrityValidation: true,
      onlyLoadAppFromAsar: true,
      enableCookieEncryption: true,
      grantFileProtocolExtraPrivileges: false,
    });
  });

  test('file associations for every image extension, each one a driver claims', async () => {
    const exts = (config().fileAssociations as Array<{ ext: string | string[] }>).flatMap((a) => (Array.isArray(a.ext) ? a.ext : [a.ext]));
    assert.deepEqual([...exts].sort(), ['cow', 'hdd', 'hds', 'img', 'qcow', 'qcow2', 'vdi', 'vhd', 'vhdx', 'vmdk']);
    const { formatSummaries } = await import('../../src-main/registry');
    const claimed = new Set(formatSummaries().flatMap((f) => f.extensions.map((e) => e.replace(/^\./, ''))));
    for (const e of exts) assert.ok(claimed.has(e), `.${e} is opened by some driver (${[...claimed].join(' ')})`);
  });
});
