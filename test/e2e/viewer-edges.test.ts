/**
 * The viewer's rough edges (issue 11), each proven in Chromium against the browser host and against what
 * qemu-img, uml_mkcow and the file system say about the same files, with screenshots at 1280×800 and
 * 800×600: a file no format recognises is asked about, errors speak the app's words, format details say
 * what they mean, the folder list, the map from the keyboard and through a backing file, and the URL.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Page } from 'playwright';
import { dw, dwOk, must, qemuIo } from '../helpers';
import { CHROMIUM, e2eSession, SHOTS, shown, test } from './browser';
import { formatPercent } from '../../src-renderer/text';
import { layoutDefects } from './layout';

const MiB = 1024 * 1024;
const session = e2eSession('dw-e2e-viewer-');

/** Screenshots of the page as it is, at both window sizes the app must work at. */
async function shots(page: Page, name: string): Promise<void> {
  for (const [w, h] of [
    [1280, 800],
    [800, 600],
  ] as const) {
    await page.setViewportSize({ width: w, height: h });
    await page.screenshot({ path: join(SHOTS, `viewer-${name}-${w}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 800 });
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

async function home(page: Page): Promise<void> {
  await page.goto(session.host.url);
  await page.getByRole('heading', { name: 'Open a disk image' }).waitFor();
  // The drivers' names arrive over the page's socket: once they show, the host answers this page.
  await shown(page, page.locator('.home-intro p', { hasText: /^QCOW2, / }));
}

async function openByPath(page: Page, path: string): Promise<void> {
  await page.getByLabel('Image path').fill(path);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
}

function qemuInfo(path: string): { format: string; 'virtual-size': number; 'cluster-size'?: number; 'format-specific'?: { data: Record<string, unknown> } } {
  return JSON.parse(must('qemu-img', ['info', '--output=json', path]).stdout);
}

/** The shares of data qemu-img map finds: all of it, and what comes from below the top image (depth > 0). */
function qemuData(path: string, format: string): { data: number; backing: number } {
  const entries = JSON.parse(must('qemu-img', ['map', '--output=json', '-f', format, path]).stdout) as Array<{ length: number; data: boolean; depth: number }>;
  const total = entries.reduce((n, e) => n + e.length, 0);
  const data = entries.filter((e) => e.data).reduce((n, e) => n + e.length, 0);
  const backing = entries.filter((e) => e.data && e.depth > 0).reduce((n, e) => n + e.length, 0);
  return { data: data / total, backing: backing / total };
}
const percent = formatPercent;

test('a file no format recognises is asked about and opened as raw only when the user says so', async () => {
  const { page } = session.browser;
  const noise = session.work.path('noise.bin');
  writeFileSync(noise, randomBytes(2 * MiB));
  // qemu-img finds no format in it either: it falls back to raw.
  assert.equal(qemuInfo(noise).format, 'raw');

  await home(page);
  await openByPath(page, noise);
  const question = page.getByTestId('unrecognised');
  await question.waitFor();
  assert.match(await question.innerText(), /No disk image format recognised[\s\S]*noise\.bin[\s\S]*QCOW2[\s\S]*raw disk/);
  assert.equal(await page.getByRole('heading', { level: 1, name: 'noise.bin' }).count(), 0, 'not opened as raw by default');
  assert.match(page.url(), /#\/$/, 'the URL stays home');
  await shots(page, 'unrecognised');

  await page.getByRole('button', { name: 'Open as raw' }).click();
  await shown(page, page.getByRole('heading', { level: 1, name: 'noise.bin' }));
  assert.match(page.url(), /#\/inspect\?format=raw&path=/);
  const legendData = page.locator('.legend-item[data-kind="data"] .legend-percent');
  await legendData.waitFor();
  assert.equal((await legendData.innerText()).trim(), percent(qemuData(noise, 'raw').data));

  // A real image is opened at once, without the question.
  const q = session.work.path('plain.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', q, '16M']);
  await home(page);
  await openByPath(page, q);
  await shown(page, page.getByRole('heading', { level: 1, name: 'plain.qcow2' }));
  assert.equal(await page.getByTestId('unrecognised').count(), 0);
  assert.deepEqual(session.browser.problems, []);
});

test('an empty file is explained in the app’s words; the CLI keeps its -f advice', async () => {
  const { page } = session.browser;
  const empty = session.work.path('empty.img');
  writeFileSync(empty, '');
  const cli = dw(['info', empty]);
  assert.equal(cli.status, 1);
  assert.match(cli.stderr, /the file is empty; it is not a disk image \(give -f raw to use it as one\)/);

  await home(page);
  await openByPath(page, empty);
  const alert = page.getByRole('alert').filter({ hasText: 'could not be opened' });
  await alert.waitFor();
  const text = await alert.innerText();
  assert.match(text, /the file is empty, so there is no disk image in it to open/);
  assert.doesNotMatch(text, /-f\b|give -|flag/);
  await shots(page, 'empty');
});

test('format details say what the fields mean: VMDK extents as a table, no parent, the Parallels header, the COW date', async () => {
  const { page } = session.browser;
  const vmdk = session.work.path('split.vmdk');
  must('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', vmdk, '3G']);
  const truth = qemuInfo(vmdk)['format-specific']!.data as { 'parent-cid': number; extents: Array<{ filename: string; 'virtual-size': number }> };
  assert.equal(truth['parent-cid'], 0xffffffff, 'qemu-img: no parent');

  await home(page);
  await openByPath(page, vmdk);
  await shown(page, page.getByRole('heading', { level: 1, name: 'split.vmdk' }));
  const table = page.getByRole('table', { name: 'Extents' });
  await table.waitFor();
  const rows = await table.locator('tbody tr').allInnerTexts();
  assert.equal(rows.length, truth.extents.length);
  truth.extents.forEach((e, i) => {
    assert.match(rows[i], new RegExp(escape(e.filename.split('/').pop()!)));
    assert.match(rows[i], new RegExp(`${e['virtual-size'] / 2 ** 30} GiB`));
    assert.match(rows[i], /sparse/);
  });
  const details = page.locator('.format-details');
  assert.match(await details.innerText(), /Parent content ID\s+none \(no parent image\)/);
  assert.doesNotMatch(await details.innerText(), /4294967295|\{"/);
  await page.getByRole('img', { name: /^Allocation map:/ }).waitFor();
  await shots(page, 'vmdk-details');

  // Parallels: the header's magic, read from the file itself, named for what it means.
  const hds = session.work.path('disk.hds');
  must('qemu-img', ['create', '-q', '-f', 'parallels', hds, '64M']);
  const magic = readFileSync(hds).subarray(0, 16).toString('latin1');
  await home(page);
  await openByPath(page, hds);
  await shown(page, page.getByRole('heading', { level: 1, name: 'disk.hds' }));
  const header = page.locator('.format-details dd[data-key="subformat"]');
  assert.equal((await header.innerText()).trim(), magic === 'WithouFreSpacExt' ? 'extended header (block table in clusters)' : 'original header (block table in sectors)');
  assert.equal(await header.getAttribute('title'), `stored as ${magic}`);
  assert.doesNotMatch(await page.locator('.format-details').innerText(), /WithouFreSpacExt/);
  // The KVM card names the format as the app does ("this one is Parallels", not the id "parallels").
  await page.getByText('KVM / QEMU would refuse it').waitFor();
  assert.deepEqual((await layoutDefects(page)).filter((d) => d.what === 'format id in words'), []);
  await shots(page, 'parallels-details');

  // UML COW: the backing file's time as uml_mkcow recorded it (its mtime), as a date.
  const base = session.work.path('cow-base.raw');
  must('qemu-img', ['create', '-q', '-f', 'raw', base, '16M']);
  const cow = session.work.path('over.cow');
  must('uml_mkcow', [cow, base]);
  const mtime = Math.floor(statSync(base).mtimeMs / 1000);
  const d = new Date(mtime * 1000);
  const pad = (x: number) => String(x).padStart(2, '0');
  const expected = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  await home(page);
  await openByPath(page, cow);
  await shown(page, page.getByRole('heading', { level: 1, name: 'over.cow' }));
  const when = page.locator('.format-details dd[data-key="backing-mtime"]');
  assert.match(await when.innerText(), new RegExp(`^${expected}`));
  assert.equal(await when.getAttribute('title'), `stored as ${mtime}`);
  await shots(page, 'cow-details');
  assert.deepEqual(session.browser.problems, []);
});

test('the folder list: natural order, images first with their format, every file on request, a scrollbar, the keyboard', async () => {
  const { page } = session.browser;
  const dir = session.work.path('folder');
  mkdirSync(join(dir, 'sub'), { recursive: true });
  for (const n of [1, 2, 10]) must('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, `file${n}.qcow2`), '1M']);
  // A qcow2 without an extension is known by its header; a raw file only by its name; notes are no image.
  must('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'blob'), '1M']);
  must('qemu-img', ['create', '-q', '-f', 'raw', join(dir, 'disk.img'), '1M']);
  writeFileSync(join(dir, 'notes.txt'), 'not a disk\n');
  for (let i = 0; i < 40; i++) writeFileSync(join(dir, `log${i}.txt`), `${i}\n`);
  assert.equal(qemuInfo(join(dir, 'blob')).format, 'qcow2');

  await home(page);
  await page.evaluate(() => window.localStorage.removeItem('diskwright.showEveryFile'));
  await openByPath(page, dir);
  const list = page.getByRole('list', { name: 'Folder contents' });
  await page.locator('.browser-path', { hasText: dir }).waitFor();
  assert.equal(await page.getByLabel('Image path').inputValue(), dir, 'the path field says where the list is');
  const names = (await list.locator('.entry-name').allInnerTexts()).map((s) => s.trim());
  assert.deepEqual(names, ['Parent folder', 'sub', 'blob', 'disk.img', 'file1.qcow2', 'file2.qcow2', 'file10.qcow2']);
  assert.match(await list.getByRole('button', { name: /^blob/ }).innerText(), /QCOW2/);
  assert.match(await list.getByRole('button', { name: /^disk\.img/ }).innerText(), /Raw\? \(by its name\)/);
  assert.match(await page.locator('.show-all').innerText(), /41 others hidden/);
  await shots(page, 'folder-images');

  await page.getByLabel('Show every file').check();
  await list.getByRole('button', { name: /^notes\.txt/ }).waitFor();
  const all = (await list.locator('.entry-name').allInnerTexts()).map((s) => s.trim());
  assert.ok(all.indexOf('log2.txt') < all.indexOf('log10.txt') && all.indexOf('file10.qcow2') < all.indexOf('log0.txt'), all.join(' '));
  await shots(page, 'folder-all');
  // Playwright hides scrollbars in headless Chromium; a second Chromium that draws them shows this list's.
  const drawn = await chromium.launch({ executablePath: CHROMIUM, ignoreDefaultArgs: ['--hide-scrollbars'], args: ['--no-sandbox', '--disable-gpu'] });
  try {
    const p2 = await drawn.newPage({ viewport: { width: 1280, height: 800 } });
    await p2.goto(session.host.url);
    await openByPath(p2, dir);
    await p2.getByLabel('Show every file').check();
    const list2 = p2.getByRole('list', { name: 'Folder contents' });
    await list2.getByRole('button', { name: /^notes\.txt/ }).waitFor();
    const bar = await list2.evaluate((el) => ({ overflow: el.scrollHeight > el.clientHeight, scrollbar: (el as HTMLElement).offsetWidth - el.clientWidth - 2 }));
    assert.ok(bar.overflow && bar.scrollbar >= 6, `a long list shows a scrollbar: ${JSON.stringify(bar)}`);
    await p2.screenshot({ path: join(SHOTS, 'viewer-folder-scrollbar-1280.png') });
    await p2.setViewportSize({ width: 800, height: 600 });
    await p2.screenshot({ path: join(SHOTS, 'viewer-folder-scrollbar-800.png') });
  } finally {
    await drawn.close();
  }
  await page.getByLabel('Show every file').uncheck();

  // The keyboard: arrows move through the list, Enter opens a folder and the focus stays in the list;
  // Backspace goes up and the folder come from has the focus.
  await list.getByRole('button', { name: /^Parent folder/ }).focus();
  await page.keyboard.press('ArrowDown');
  assert.equal(await page.evaluate(() => document.activeElement?.querySelector('.entry-name')?.textContent), 'sub');
  await page.keyboard.press('Enter');
  await page.locator('.browser-path', { hasText: join(dir, 'sub') }).waitFor();
  assert.equal(await page.getByLabel('Image path').inputValue(), join(dir, 'sub'));
  await page.waitForFunction(() => document.activeElement?.closest('ul[aria-label="Folder contents"]') !== null);
  await page.keyboard.press('Backspace');
  await page.locator('.browser-path', { hasText: new RegExp(`^${escape(dir)}$`) }).waitFor();
  await page.waitForFunction(() => document.activeElement?.querySelector('.entry-name')?.textContent === 'sub');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('ArrowDown');
  assert.equal(await page.evaluate(() => document.activeElement?.querySelector('.entry-name')?.textContent), 'disk.img');
  await shots(page, 'folder-keyboard');
  assert.deepEqual(session.browser.problems, []);
});

test('the map: cells read from the keyboard with precise ranges, and data from the backing file drawn apart', async () => {
  const { page } = session.browser;
  const base = session.work.path('mbase.qcow2');
  const top = session.work.path('mtop.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', base, '200M']);
  qemuIo(base, 'qcow2', ['write -P 0x11 0 40M']);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'mbase.qcow2', '-F', 'qcow2', top]);
  qemuIo(top, 'qcow2', ['write -P 0x22 10M 10M', 'write -P 0x33 150M 2M']);
  const truth = qemuData(top, 'qcow2');
  assert.ok(truth.backing > 0.1 && truth.data > truth.backing, JSON.stringify(truth));

  await home(page);
  await openByPath(page, top);
  await shown(page, page.getByRole('heading', { level: 1, name: 'mtop.qcow2' }));
  const map = page.getByRole('img', { name: /^Allocation map:/ });
  await map.waitFor();
  assert.equal((await page.locator('.legend-item[data-kind="data"] .legend-percent').innerText()).trim(), percent(truth.data));
  assert.equal((await page.locator('.legend-item[data-kind="backing"] .legend-percent').innerText()).trim(), percent(truth.backing));

  // 200 MiB in 1024 cells: 200 KiB each, so cell ends fall between whole MiB.
  await map.focus();
  const readout = page.getByTestId('map-readout');
  assert.match(await readout.innerText(), /^Cell 1 of 1024, 0 – 200 KiB: 100\.0% data \(100\.0% of it from the backing file\)/);
  await page.keyboard.press('ArrowDown'); // cell 65: 12.5 – 12.6953125 MiB, written in the top image
  assert.match(await readout.innerText(), /^Cell 65 of 1024, 12\.5 – 12\.7 MiB: 100\.0% data$/);
  const byKeys = await readout.innerText();
  await page.keyboard.press('End');
  const last = await readout.innerText();
  const m = /^Cell 1024 of 1024, ([\d.]+) – ([\d.]+) MiB: 100\.0% unallocated$/.exec(last);
  assert.ok(m && m[1] !== m[2] && Number(m[2]) === 200, last);
  await shots(page, 'map-keyboard');
  await map.blur();
  // The pointer on the same cell (65: first column, second row; 2 px pad, 12 px pitch) reads the same words.
  await map.hover({ position: { x: 7, y: 19 } });
  assert.equal(await readout.innerText(), byKeys, 'hover and keyboard say the same of one cell');
  assert.deepEqual(session.browser.problems, []);
});

test('the URL names the view: reload keeps the image, Back returns home or closes a wizard, never leaves', async () => {
  const { page } = session.browser;
  const img = session.work.path('routed.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '32M']);
  await home(page);
  const start = page.url();
  await openByPath(page, img);
  await shown(page, page.getByRole('heading', { level: 1, name: 'routed.qcow2' }));
  assert.equal(new URL(page.url()).hash, `#/inspect?path=${encodeURIComponent(img).replace(/%20/g, '+')}`);

  await page.reload();
  await shown(page, page.getByRole('heading', { level: 1, name: 'routed.qcow2' }));
  await page.getByRole('button', { name: 'Check & Repair…' }).click();
  await shown(page, page.getByRole('heading', { level: 1, name: 'Check & Repair' }));
  assert.match(new URL(page.url()).hash, /^#\/check\?path=/);
  await shots(page, 'route-check');

  await page.goBack();
  await shown(page, page.getByRole('heading', { level: 1, name: 'routed.qcow2' }));
  await page.goBack();
  await page.getByRole('heading', { name: 'Open a disk image' }).waitFor();
  assert.equal(new URL(page.url()).origin + new URL(page.url()).pathname + new URL(page.url()).search, new URL(start).origin + new URL(start).pathname + new URL(start).search);
  await page.goForward();
  await shown(page, page.getByRole('heading', { level: 1, name: 'routed.qcow2' }));

  // A wizard's own Close returns to the entry before it instead of piling up history.
  await page.getByRole('button', { name: 'Check & Repair…' }).click();
  await shown(page, page.getByRole('heading', { level: 1, name: 'Check & Repair' }));
  const depth = await page.evaluate(() => window.history.length);
  await page.locator('.wizard-head').getByRole('button', { name: /Close/ }).click();
  await shown(page, page.getByRole('heading', { level: 1, name: 'routed.qcow2' }));
  assert.equal(await page.evaluate(() => window.history.length), depth);
  assert.match(new URL(page.url()).hash, /^#\/inspect\?path=/);
  await page.goBack();
  await page.getByRole('heading', { name: 'Open a disk image' }).waitFor();
  await shots(page, 'route-home');
  assert.deepEqual(session.browser.problems, []);
});

test('VHD and VDI details say what their fields mean: who made it, sizes in bytes, the parent as named, the block map', async () => {
  const { page } = session.browser;
  // A dynamic VHD made by qemu-img: its footer (copied at byte 0) says who made it and the exact current size.
  const vhd = session.work.path('made.vhd');
  must('qemu-img', ['create', '-q', '-f', 'vpc', vhd, '16M']);
  const footer = readFileSync(vhd).subarray(0, 512);
  const creatorApp = footer.toString('latin1', 28, 32);
  const creatorOs = footer.toString('latin1', 36, 40);
  const currentSize = Number(footer.readBigUInt64BE(48));
  assert.equal(footer.readUInt32BE(60), 3, 'a dynamic disk');
  await home(page);
  await openByPath(page, vhd);
  await shown(page, page.getByRole('heading', { level: 1, name: 'made.vhd' }));
  const fact = (key: string) => page.locator(`.format-details dd[data-key="${key}"]`);
  assert.equal((await fact('creator-app').innerText()).trim(), creatorApp === 'qemu' ? 'qemu (QEMU)' : creatorApp);
  assert.equal(await fact('creator-app').getAttribute('title'), `stored as ${creatorApp}`);
  assert.equal((await fact('creator-os').innerText()).trim(), creatorOs === 'Wi2k' ? 'Windows (Wi2k)' : creatorOs);
  assert.equal((await fact('current-size').innerText()).trim().split(' (')[0], `${currentSize.toLocaleString('en-US')} bytes`);
  assert.match(await fact('subformat').innerText(), /^dynamic \(blocks allocated as written\)$/);
  assert.match(await fact('timestamp').innerText(), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
  const details = await page.locator('.format-details').innerText();
  assert.equal((await fact('block-size').innerText()).trim(), '2 MiB');
  assert.doesNotMatch(details, /Creator os|Bat entries|T\d\d:\d\d:\d\dZ/, details);
  // qemu-img's 16 MiB VHD is 16,781,312 bytes (the geometry rounds up): no figure may say a plain "16 MiB" for it.
  assert.deepEqual((await layoutDefects(page)).filter((d) => d.what === 'rounded size as exact' || d.what === 'broken word'), []);
  await shots(page, 'vhd-details');

  // A differencing VHD over it (qemu-img makes none): the parent as each locator names it.
  const diff = session.work.path('over.vhd');
  dwOk(['create', '-f', 'vpc', '-b', 'made.vhd', '-F', 'vpc', diff]);
  await home(page);
  await openByPath(page, diff);
  await shown(page, page.getByRole('heading', { level: 1, name: 'over.vhd' }));
  assert.match(await fact('parent-locators').innerText(), /Windows, relative \(W2ru\): \.\\made\.vhd/);
  assert.match(await fact('parent-timestamp').innerText(), /UTC$/);

  // A VDI made by qemu-img: blocks as many as qemu-img's cluster size makes, the map and data offsets in bytes.
  const vdi = session.work.path('made.vdi');
  must('qemu-img', ['create', '-q', '-f', 'vdi', vdi, '16M']);
  const q = qemuInfo(vdi);
  await home(page);
  await openByPath(page, vdi);
  await shown(page, page.getByRole('heading', { level: 1, name: 'made.vdi' }));
  assert.equal((await fact('blocks-in-image').innerText()).trim(), String(q['virtual-size'] / q['cluster-size']!));
  assert.match(await fact('text').innerText(), /QEMU VM Virtual Disk Image/);
  assert.match(await fact('data-offset').innerText(), /^byte [\d,]+ \(/);
  assert.match(await fact('block-map-offset').innerText(), /^byte \d+$/, 'an offset under 1 KiB needs no unit');
  assert.match(await fact('subformat').innerText(), /^dynamic \(blocks allocated as written\)$/);
  assert.deepEqual((await layoutDefects(page)).filter((d) => d.what === 'format id in words' || d.what === 'broken word'), []);
  await shots(page, 'vdi-details');
  assert.deepEqual(session.browser.problems, []);
});
