/**
 * The question before following a backing file outside the image's folder, in Chromium against the browser
 * host: the Inspect view names the exact file and asks; until it is answered the map is the overlay's own
 * (as qemu-img maps it with the backing cut off), and after "Follow this backing file" the chain shows
 * both images and the map matches `qemu-img map` of the overlay, which follows the chain.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import type { Page } from 'playwright';
import { must, qemuIo } from '../helpers';
import { e2eSession, SHOTS, test } from './browser';
import { formatPercent } from '../../src-renderer/text';


/** The allocation map's colours (AllocationMap.vue), as RGB. */
const COLOURS = { data: [0x2f, 0x5a, 0x8c], zero: [0x8c, 0xc5, 0xb4], unallocated: [0xe1, 0xe5, 0xea] } as const;
/** Data a backing file provides is drawn apart from the image's own; it is still data. */
const BACKING_DATA = [0x8f, 0xb0, 0xd8] as const;
type Kind = keyof typeof COLOURS;
type Shares = Record<Kind, number>;
const KINDS = ['data', 'zero', 'unallocated'] as const;

/** The shares of data, zero and unallocated bytes according to `qemu-img map` of `spec` (a path or json: filename). */
function oracleShares(spec: string): Shares {
  const entries = JSON.parse(must('qemu-img', ['map', '--output=json', spec]).stdout) as Array<{ length: number; present: boolean; data: boolean }>;
  const bytes = { data: 0, zero: 0, unallocated: 0 };
  for (const e of entries) bytes[e.data ? 'data' : e.present ? 'zero' : 'unallocated'] += e.length;
  const total = bytes.data + bytes.zero + bytes.unallocated;
  return { data: bytes.data / total, zero: bytes.zero / total, unallocated: bytes.unallocated / total };
}

/** The overlay as qemu-img sees it when its backing file is not opened. */
const withoutBacking = (overlay: string) => 'json:' + JSON.stringify({ driver: 'qcow2', file: { driver: 'file', filename: overlay }, backing: null });

/** Counts the canvas pixels of each map colour and returns their shares of all coloured pixels. */
async function pictureShares(page: Page): Promise<Shares> {
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
    return { data: counts.data / all, zero: counts.zero / all, unallocated: counts.unallocated / all };
  }, [COLOURS, BACKING_DATA] as const);
}

const percent = formatPercent;

/** Waits until the drawn map and its legend show `want`, then checks them kind by kind. */
async function expectMap(page: Page, want: Shares, what: string): Promise<void> {
  const legend = (kind: Kind) => page.locator(`.legend-item[data-kind="${kind}"] .legend-percent`);
  // The map is redrawn after a grant: wait for the legend to say the new figures before reading pixels.
  await page.waitForFunction(
    (expected) => document.querySelector('.legend-item[data-kind="data"] .legend-percent')?.textContent?.trim() === expected,
    percent(want.data),
  );
  const drawn = await pictureShares(page);
  for (const kind of KINDS) {
    assert.ok(Math.abs(drawn[kind] - want[kind]) < 0.01, `${what}, ${kind}: drawn ${percent(drawn[kind])}, qemu-img map says ${percent(want[kind])}`);
    assert.equal((await legend(kind).innerText()).trim(), percent(want[kind]), `${what}: legend for ${kind}`);
  }
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const session = e2eSession('dw-e2e-ask-');

/** A base in one folder and an overlay in another naming it by absolute path, as `qemu-img create -b /abs` writes it. */
function makePair(folder: string): { base: string; overlay: string } {
  const bases = session.work.path(`${folder}-bases`);
  const vm = session.work.path(`${folder}-vm`);
  mkdirSync(bases, { recursive: true });
  mkdirSync(vm, { recursive: true });
  const base = join(bases, 'base.qcow2');
  const overlay = join(vm, 'overlay.qcow2');
  must('qemu-img', ['create', '-f', 'qcow2', base, '64M']);
  qemuIo(base, 'qcow2', ['write -P 0x11 0 16M', 'write -P 0x12 40M 8M']);
  must('qemu-img', ['create', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay]);
  // Data over the base's data and beside it, a zeroed range over the base's data, the rest left to the base.
  qemuIo(overlay, 'qcow2', ['write -P 0x22 4M 4M', 'write -z 10M 2M', 'write -P 0x33 24M 8M']);
  return { base, overlay };
}

async function openImage(page: Page, path: string): Promise<void> {
  const back = page.getByRole('button', { name: /Open another image/ });
  if (await back.isVisible()) await back.click();
  await page.getByLabel('Image path').fill(path);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
}

test('an overlay whose base lies in another folder: the app asks, the map is the overlay’s own; Follow shows the whole chain', async () => {
  const { base, overlay } = makePair('follow');
  const own = oracleShares(withoutBacking(overlay));
  const chain = oracleShares(overlay);
  assert.ok(chain.data > own.data + 0.1, `the base adds data the overlay lacks: ${JSON.stringify({ own, chain })}`);

  const { page } = session.browser;
  await page.goto(session.host.url);
  await page.getByRole('heading', { name: 'Open a disk image' }).waitFor();
  await openImage(page, overlay);
  await page.getByRole('heading', { name: 'overlay.qcow2', level: 1 }).waitFor();

  const question = page.getByRole('region', { name: /Follow a backing file outside the folder/ });
  await question.waitFor();
  const asked = (await question.innerText()).replace(/\s+/g, ' ');
  assert.match(asked, new RegExp(`overlay\\.qcow2 uses a backing file outside its folder: ${escape(base)}\\. Follow it\\?`));
  const follow = question.getByRole('button', { name: 'Follow this backing file' });
  await follow.waitFor();
  await question.getByRole('button', { name: 'Not now' }).waitFor();

  // Not followed: the chain says where it stops, and the map shows only the overlay's own allocation.
  const chainList = page.getByRole('list', { name: 'Backing chain' });
  assert.match(await chainList.innerText(), /Not opened: .*lies outside the image's folder/);
  await expectMap(page, own, 'before the grant');
  const cutNote = page.getByTestId('map-cut');
  assert.match((await cutNote.innerText()).replace(/\s+/g, ' '), new RegExp(`stops at overlay\\.qcow2: its backing file ${escape(base)} lies outside its folder and was not followed`));
  assert.doesNotMatch(await page.locator('.map-scale').innerText(), /whole backing chain/);
  await page.screenshot({ path: join(SHOTS, 'backing-ask.png'), fullPage: true });

  await follow.click();
  await question.waitFor({ state: 'detached' });
  await cutNote.waitFor({ state: 'detached' });
  const levels = chainList.locator('.chain-level');
  await page.waitForFunction(() => document.querySelectorAll('.chain-level').length === 2 && !document.querySelector('.chain-missing'));
  assert.equal(await levels.count(), 2);
  assert.match(await levels.nth(0).innerText(), new RegExp(escape(overlay)));
  assert.match(await levels.nth(1).innerText(), new RegExp(`Backing 1[\\s\\S]*${escape(base)}[\\s\\S]*QCOW2 · 64 MiB virtual`, 'i'));
  await expectMap(page, chain, 'after the grant');
  assert.match(await page.locator('.map-scale').innerText(), /counted through the whole backing chain/);
  await page.screenshot({ path: join(SHOTS, 'backing-followed.png'), fullPage: true });
  assert.deepEqual(session.browser.problems, [], 'no console errors');
});

test('“Not now” puts the question away and leaves the map cut, with the note saying so', async () => {
  const { base, overlay } = makePair('decline');
  const own = oracleShares(withoutBacking(overlay));
  const { page } = session.browser;
  await openImage(page, overlay);
  await page.getByRole('heading', { name: 'overlay.qcow2', level: 1 }).waitFor();
  const question = page.getByRole('region', { name: /Follow a backing file outside the folder/ });
  await question.waitFor();
  // The grant made for the other overlay does not carry over to this one.
  assert.match((await question.innerText()).replace(/\s+/g, ' '), new RegExp(`outside its folder: ${escape(base)}\\.`));
  await question.getByRole('button', { name: 'Not now' }).click();
  await question.waitFor({ state: 'detached' });
  await expectMap(page, own, 'after Not now');
  const note = page.getByTestId('map-cut');
  await note.waitFor();
  assert.match(await page.getByRole('list', { name: 'Backing chain' }).innerText(), /Not opened/);
  // The answer can be changed: the note offers the question again.
  await note.getByRole('button', { name: 'Ask again' }).click();
  await question.waitFor();
  assert.deepEqual(session.browser.problems, []);
});
