/**
 * The renderer's half of the desktop conventions (issue 25), in Chromium: the page is given a stand-in for
 * Electron's preload bridge (window.diskwright, defined before the app runs) whose calls go to the browser
 * host over its socket, so the real renderer runs against the real engine. What the main process would send
 * — the native menu's commands, the files the system opens — is sent through the bridge's onDesktopCommand,
 * and a dropped file's path comes from pathForFile as webUtils.getPathForFile gives it. The main process's
 * side is checked in test/unit/electron-config.test.ts.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { must } from '../helpers';
import { e2eSession, SHOTS, test } from './browser';

const session = e2eSession('dw-e2e-desktop-bridge-');

/** window.diskwright as the preload makes it, its calls carried by the host's socket (the cookie authenticates). */
const BRIDGE = `(() => {
  const pending = new Map();
  const jobListeners = new Set();
  let next = 1;
  let socket;
  const open = () => socket ??= new Promise((resolve) => {
    const ws = new WebSocket('ws://' + location.host + '/ws');
    ws.onopen = () => resolve(ws);
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.event) { for (const l of jobListeners) l(msg.event); return; }
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if (!p) return;
      if (msg.error) p.reject(msg.error); else p.resolve(msg.result);
    };
  });
  window.__dropPaths = {};
  window.diskwright = {
    call: async (method, args) => {
      const ws = await open();
      const id = next++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        ws.send(JSON.stringify({ id, method, args }));
      });
    },
    onJobEvent(l) { jobListeners.add(l); void open(); return () => jobListeners.delete(l); },
    pathForFile: (file) => window.__dropPaths[file.name] ?? '',
    onDesktopCommand(l) { window.__desktopCommand = l; return () => { window.__desktopCommand = undefined; }; },
  };
})()`;

let image = '';
/** The image, and the bridge given to every page of this browser (once; from the first test on). */
async function setUp(): Promise<void> {
  if (image) return;
  image = session.work.path('menu.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', image, '32M']);
  await session.browser.page.addInitScript(BRIDGE);
}

/** What the main process would send on the desktop-command channel. */
async function send(command: object): Promise<void> {
  const { page } = session.browser;
  await page.waitForFunction('typeof window.__desktopCommand === "function"');
  await page.evaluate(`window.__desktopCommand(${JSON.stringify(command)})`);
}

test('the menu’s commands and the files the system opens are routed as the buttons would be', async () => {
  await setUp();
  const { page, problems } = session.browser;
  await page.goto(session.host.url);
  await page.getByRole('heading', { name: 'Open a disk image', level: 1 }).waitFor();
  assert.match(await page.locator('.topbar-note').innerText(), /Desktop app/, 'the page takes the stand-in for the desktop bridge');

  // Convert and Check & Repair act on the image on screen: with none, a note says so and nothing opens.
  await send({ command: 'convert' });
  await page.getByRole('status').filter({ hasText: 'Open an image first' }).waitFor();
  assert.equal(await page.getByRole('heading', { name: 'Convert', level: 1 }).count(), 0);

  // A file the system opened (open-file, second-instance, Open Recent, Open…): Inspect.
  await send({ command: 'open-path', path: image });
  await page.getByRole('heading', { name: 'menu.qcow2', level: 1 }).waitFor();
  assert.equal(await page.getByRole('status').filter({ hasText: 'Open an image first' }).count(), 0, 'the earlier note is dismissed');

  await send({ command: 'convert' });
  await page.getByRole('heading', { name: 'Convert', level: 1 }).waitFor();
  // The wizard names its source once the image's facts arrive (a moment after the heading, on a loaded machine).
  await page.locator('main').getByText(/menu\.qcow2/).first().waitFor();
  await page.screenshot({ path: join(SHOTS, 'desktop-menu-convert.png') });

  // Another command while a wizard is open (and idle) closes it and opens what was asked for.
  await send({ command: 'check-repair' });
  await page.getByRole('heading', { name: 'Check & Repair', level: 1 }).waitFor();
  assert.equal(await page.getByRole('heading', { name: 'Convert', level: 1 }).count(), 0);

  // Check & Repair runs its check at once; a command during a job is refused (desktop.ts): wait for the verdict.
  await page.getByTestId('findings').waitFor({ timeout: 60_000 });
  await send({ command: 'new-image' });
  await page.getByRole('heading', { name: 'New image', level: 1 }).waitFor();

  // What did not come from our main process is ignored.
  await send({ command: 'format-disk', path: '/' });
  await send({ command: 'open-path', path: '' });
  await send({ command: 'open-path', path: 42 });
  await page.waitForTimeout(200);
  await page.getByRole('heading', { name: 'New image', level: 1 }).waitFor();
  assert.deepEqual(problems, []);
});

test('a file dropped on the desktop window opens on Inspect by the path the bridge gives', async () => {
  await setUp();
  const { page, problems } = session.browser;
  await page.goto(session.host.url);
  await page.getByRole('heading', { name: 'Open a disk image', level: 1 }).waitFor();
  await page.evaluate(`(() => {
    window.__dropPaths['menu.qcow2'] = ${JSON.stringify(image)};
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(16)], 'menu.qcow2'));
    for (const type of ['dragenter', 'dragover', 'drop']) {
      window.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
    }
  })()`);
  await page.getByRole('heading', { name: 'menu.qcow2', level: 1 }).waitFor();
  assert.equal(await page.locator('.drop-overlay').count(), 0);
  await page.screenshot({ path: join(SHOTS, 'desktop-drop-opened.png') });
  assert.deepEqual(problems, []);
});
