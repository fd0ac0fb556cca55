/**
 * The "Inspect an image" slice end to end: the browser host serves the built UI, Chromium opens it with the
 * launch token, finds an image through the path field and the folder list, and the page must show what
 * qemu-img says about the same file: format, virtual size, and an allocation map whose coloured areas
 * match the shares in `qemu-img map`.
 */
import assert from 'node:assert/strict';
import { basename, dirname, join } from 'node:path';
import type { Page } from 'playwright';
import { must, qemuIo } from '../helpers';
import { e2eSession, SHOTS, test } from './browser';
import { formatPercent } from '../../src-renderer/text';

const MiB = 1024 * 1024;

/** The allocation map's colours (AllocationMap.vue), as RGB. */
const COLOURS = { data: [0x2f, 0x5a, 0x8c], zero: [0x8c, 0xc5, 0xb4], unallocated: [0xe1, 0xe5, 0xea] } as const;
/** Data a backing file provides is drawn apart from the image's own; it is still data. */
const BACKING_DATA = [0x8f, 0xb0, 0xd8] as const;
type Kind = keyof typeof COLOURS;
type Shares = Record<Kind, number>;

interface OracleMapEntry {
  start: number;
  length: number;
  present: boolean;
  zero: boolean;
  data: boolean;
}

/** The shares of data, zero and unallocated bytes according to `qemu-img map`. */
function oracleShares(path: string, format: string): Shares {
  const entries = JSON.parse(must('qemu-img', ['map', '--output=json', '-f', format, path]).stdout) as OracleMapEntry[];
  const bytes = { data: 0, zero: 0, unallocated: 0 };
  for (const e of entries) bytes[e.data ? 'data' : e.present ? 'zero' : 'unallocated'] += e.length;
  const total = bytes.data + bytes.zero + bytes.unallocated;
  return { data: bytes.data / total, zero: bytes.zero / total, unallocated: bytes.unallocated / total };
}

function oracleInfo(path: string): { format: string; 'virtual-size': number; 'cluster-size'?: number } {
  return JSON.parse(must('qemu-img', ['info', '--output=json', path]).stdout);
}

/** Counts the canvas pixels of each map colour and returns their shares of all coloured pixels. */
async function pictureShares(page: Page): Promise<Shares & { pixels: number }> {
  return page.getByTestId('allocation-map').evaluate((el, [colours, backing]) => {
    const canvas = el as HTMLCanvasElement;
    const ctx = canvas.getContext('2d');
    if (!ctx) throw new Error('no 2d context');
    const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    const counts: Record<string, number> = { data: 0, zero: 0, unallocated: 0 };
    for (let i = 0; i < px.length; i += 4) {
      for (const [kind, [r, g, b]] of Object.entries(colours)) {
        if (px[i] === r && px[i + 1] === g && px[i + 2] === b && px[i + 3] === 255) counts[kind]++;
      }
      if (px[i] === backing[0] && px[i + 1] === backing[1] && px[i + 2] === backing[2] && px[i + 3] === 255) counts.data++;
    }
    const all = counts.data + counts.zero + counts.unallocated;
    return { data: counts.data / all, zero: counts.zero / all, unallocated: counts.unallocated / all, pixels: all };
  }, [COLOURS, BACKING_DATA] as const);
}

const percent = formatPercent;

/** The page's text for one map kind in the legend, e.g. "20.4%". */
function legendPercent(page: Page, kind: Kind) {
  return page.locator(`.legend-item[data-kind="${kind}"] .legend-percent`);
}

function stat(page: Page, name: string) {
  return page.locator('.stat').filter({ has: page.locator('dt', { hasText: new RegExp(`^${name}$`) }) }).locator('dd');
}

const session = e2eSession('dw-e2e-inspect-');

test('a raw image: open it from the folder list and see qemu-img’s facts and map', async () => {
  const image = session.work.path('disk.raw');
  must('qemu-img', ['create', '-f', 'raw', image, '64M']);
  // Data in whole MiB runs, one half-cell run (16 KiB into a 64 KiB cell), zeros written as data, and holes.
  qemuIo(image, 'raw', ['write -P 0xab 0 8M', 'write -P 0xcd 32M 4M', `write -P 0xef ${40 * MiB + 16384} 32k`, 'write -P 0 48M 1M']);
  const truth = oracleInfo(image);
  const shares = oracleShares(image, 'raw');
  assert.ok(shares.data > 0.15 && shares.zero > 0.5, `the oracle's map should mix data and holes: ${JSON.stringify(shares)}`);

  const { page } = session.browser;
  await page.goto(session.host.url);
  await page.getByRole('heading', { name: 'Open a disk image' }).waitFor();

  // A folder typed into the path field is listed rather than treated as an error.
  await page.getByLabel('Image path').fill(session.work.dir);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  await page.locator('.browser-path', { hasText: session.work.dir }).waitFor();
  // Up to the parent and back in by name, as a person would browse.
  await page.getByRole('button', { name: /^Parent folder/ }).click();
  await page.locator('.browser-path', { hasText: new RegExp(`^${dirname(session.work.dir).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) }).waitFor();
  await page.getByRole('button', { name: new RegExp(`^${basename(session.work.dir)}\\b`) }).click();
  await page.getByRole('button', { name: /^disk\.raw/ }).click();
  // A raw file has no header: the app asks before taking it as a raw disk.
  await page.getByRole('button', { name: 'Open as raw' }).click();

  await page.getByRole('heading', { name: 'disk.raw', level: 1 }).waitFor();
  assert.equal(truth.format, 'raw');
  assert.equal((await stat(page, 'Format').innerText()).trim(), 'Raw');
  const virtual = await stat(page, 'Virtual size').innerText();
  assert.match(virtual, /64 MiB/);
  assert.match(virtual, new RegExp(truth['virtual-size'].toLocaleString('en-US')));

  const map = page.getByRole('img', { name: /^Allocation map:/ });
  await map.waitFor();
  const drawn = await pictureShares(page);
  assert.ok(drawn.pixels > 1000, 'the map has coloured cells');
  for (const kind of ['data', 'zero', 'unallocated'] as const) {
    assert.ok(Math.abs(drawn[kind] - shares[kind]) < 0.01, `${kind}: drawn ${percent(drawn[kind])}, qemu-img map says ${percent(shares[kind])}`);
    assert.equal((await legendPercent(page, kind).innerText()).trim(), percent(shares[kind]), `legend for ${kind}`);
  }
  assert.match((await map.getAttribute('aria-label')) ?? '', new RegExp(`${percent(shares.data).replace('.', '\\.')} data`));
  await page.getByText('None: this image stands on its own.').waitFor();

  await page.screenshot({ path: join(SHOTS, 'inspect.png'), fullPage: true });
  assert.deepEqual(session.browser.problems, [], 'no console errors (CSP violations would show here)');
});

test('a missing path gives one plain error and no inspect view', async () => {
  const { page } = session.browser;
  const back = page.getByRole('button', { name: /Open another image/ });
  if (await back.isVisible()) await back.click();
  const missing = session.work.path('no-such-disk.qcow2');
  await page.getByLabel('Image path').fill(missing);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  const alert = page.getByRole('alert');
  await alert.waitFor();
  const text = await alert.innerText();
  await page.screenshot({ path: join(SHOTS, 'missing.png') });
  assert.match(text, /The image could not be opened/);
  assert.match(text, new RegExp(`${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: no such file`));
  assert.doesNotMatch(text, /Error:|ENOENT|at \w+ \(/, 'no error class names, codes or stack frames');
  assert.equal(await page.getByLabel('Image path').getAttribute('aria-invalid'), 'true');
});

test('a file dropped on the browser page is explained, not silently ignored', async () => {
  const { page } = session.browser;
  await page.evaluate(() => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(512)], 'dropped.vmdk'));
    for (const type of ['dragenter', 'dragover', 'drop']) {
      window.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
    }
  });
  const notice = page.getByRole('status').filter({ hasText: 'dropped.vmdk' });
  await notice.waitFor();
  assert.match(await notice.innerText(), /does not tell a page where a dropped file lives[\s\S]*Image path/);
  await page.screenshot({ path: join(SHOTS, 'drop.png') });
  await notice.getByRole('button', { name: 'Dismiss' }).click();
  await notice.waitFor({ state: 'detached' });
});

test('a qcow2 overlay on a qcow2 base: header facts, backing chain, snapshots and the map of the chain', async () => {
  const base = session.work.path('base.qcow2');
  const overlay = session.work.path('overlay.qcow2');
  must('qemu-img', ['create', '-f', 'qcow2', base, '32M']);
  qemuIo(base, 'qcow2', ['write -P 0x11 0 4M']);
  must('qemu-img', ['create', '-f', 'qcow2', '-o', 'cluster_size=65536', '-b', 'base.qcow2', '-F', 'qcow2', overlay]);
  // Data over the base's data, a zeroed range, and everything else unallocated in both levels.
  qemuIo(overlay, 'qcow2', ['write -P 0x22 1M 2M', 'write -z 8M 1M', 'write -P 0x33 20M 192k']);
  must('qemu-img', ['snapshot', '-c', 'before-upgrade', overlay]);
  const truth = oracleInfo(overlay);
  const shares = oracleShares(overlay, 'qcow2');
  assert.ok(shares.data > 0 && shares.zero > 0 && shares.unallocated > 0, `the oracle's map should have all three kinds: ${JSON.stringify(shares)}`);

  const { page } = session.browser;
  const back = page.getByRole('button', { name: /Open another image/ });
  if (await back.isVisible()) await back.click();
  await page.getByLabel('Image path').fill(overlay);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  await page.getByRole('heading', { name: 'overlay.qcow2', level: 1 }).waitFor();

  assert.equal(truth.format, 'qcow2');
  assert.equal((await stat(page, 'Format').innerText()).trim(), 'QCOW2');
  assert.match(await stat(page, 'Virtual size').innerText(), new RegExp(truth['virtual-size'].toLocaleString('en-US')));
  assert.equal(truth['cluster-size'], 65536);
  assert.match(await stat(page, 'Cluster size').innerText(), /64 KiB/);

  const chain = page.getByRole('list', { name: 'Backing chain' });
  assert.match(await chain.innerText(), new RegExp(`${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}[\\s\\S]*QCOW2 · 32 MiB virtual`));
  await page.getByRole('cell', { name: 'before-upgrade' }).waitFor();
  assert.match(await page.locator('.facts').first().innerText(), /Compat\s+1\.1/);

  const map = page.getByRole('img', { name: /^Allocation map:/ });
  await map.waitFor();
  const drawn = await pictureShares(page);
  for (const kind of ['data', 'zero', 'unallocated'] as const) {
    assert.ok(Math.abs(drawn[kind] - shares[kind]) < 0.01, `${kind}: drawn ${percent(drawn[kind])}, qemu-img map says ${percent(shares[kind])}`);
    assert.equal((await legendPercent(page, kind).innerText()).trim(), percent(shares[kind]), `legend for ${kind}`);
  }
  await page.screenshot({ path: join(SHOTS, 'inspect-qcow2.png'), fullPage: true });
  assert.deepEqual(session.browser.problems, []);
});
