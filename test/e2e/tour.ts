/**
 * A walk through every view and wizard step of the app, on images made by qemu-img, calling `visit` at each stop
 * with a short name. The layout audit, the accessibility audit and the contact sheet all take the same walk, so a
 * view added here is audited three ways.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright';
import { Qcow2Patcher } from '../interop/qcow2-check-patch';
import { dwOk, must, qemuIo } from '../helpers';
import type { E2eSession } from './browser';

export type Visit = (stop: string) => Promise<void>;

/** The images the walk opens, made once per test file. */
export interface TourImages {
  /** A qcow2 over a qcow2 base, with data in both and one internal snapshot. */
  img: string;
  /** A qcow2 that leaks two clusters (Check & Repair has findings to show). */
  leaky: string;
  /** A qcow2 holding an ext4 whose 4 MiB file was deleted (Compact has space to give back, and a map to show it). */
  fs: string;
  /** A differencing VHD over a VHD beside it (Compact cannot work in place: it says why). */
  diffVhd: string;
  /** A VMDK split into 2 GiB sparse extents (the details show them as a table). */
  splitVmdk: string;
  /** A Parallels image with data (its header and block table in the details). */
  parallels: string;
}

export function makeTourImages(session: E2eSession): TourImages {
  const base = session.work.path('base.qcow2');
  const img = session.work.path('vm.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', base, '64M']);
  qemuIo(base, 'qcow2', ['write -P 0x11 0 4M']);
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', img]);
  qemuIo(img, 'qcow2', ['write -P 0x22 8M 2M']);
  must('qemu-img', ['snapshot', '-c', 'first', img]);
  qemuIo(img, 'qcow2', ['write -P 0x33 20M 1M']);
  const leaky = session.work.path('leaky.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', leaky, '16M']);
  qemuIo(leaky, 'qcow2', ['write -P 0x11 0 256k']);
  const p = new Qcow2Patcher(leaky);
  p.setRefcount(p.appendCluster(0x5a), 1);
  p.setRefcount(p.appendCluster(0x5b), 1);

  const tree = session.work.path('fs-tree');
  mkdirSync(tree);
  writeFileSync(join(tree, 'keep.bin'), Buffer.alloc(1 << 20, 0x42));
  writeFileSync(join(tree, 'gone.bin'), Buffer.alloc(4 << 20, 0x43));
  const fsRaw = session.work.path('fs.raw');
  must('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', tree, fsRaw, '16M']);
  must('debugfs', ['-w', '-R', 'rm /gone.bin', fsRaw]);
  const fs = session.work.path('fs.qcow2');
  must('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', fsRaw, fs]);

  // qemu-img makes no VHD over a parent: the parent is qemu's, the child ours.
  const vhdBase = session.work.path('base.vhd');
  must('qemu-img', ['create', '-q', '-f', 'vpc', vhdBase, '16M']);
  const diffVhd = session.work.path('diff.vhd');
  dwOk(['create', '-f', 'vpc', '-b', 'base.vhd', '-F', 'vpc', diffVhd]);

  // The image views of formats other than qcow2 show their own details (extents, headers, parents).
  const splitVmdk = session.work.path('split.vmdk');
  must('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', splitVmdk, '5G']);
  qemuIo(splitVmdk, 'vmdk', ['write -P 0x44 0 1M', 'write -P 0x45 3G 1M']);
  const parallels = session.work.path('disk.hds');
  must('qemu-img', ['create', '-q', '-f', 'parallels', parallels, '64M']);
  qemuIo(parallels, 'parallels', ['write -P 0x46 1M 2M']);
  return { img, leaky, fs, diffVhd, splitVmdk, parallels };
}

async function open(page: Page, url: string, image: string, name: string): Promise<void> {
  await page.goto(url);
  await page.getByLabel('Image path').fill(image);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  await page.getByRole('heading', { name, level: 1 }).waitFor();
}

/** The image view once its map is drawn. */
async function mapDrawn(page: Page): Promise<void> {
  await page.getByRole('img', { name: /^Allocation map:/ }).waitFor();
  await page.getByText('Drawing…').waitFor({ state: 'detached' });
}

/** Walks the app, stopping at each view and wizard step once it has settled. */
export async function tour(page: Page, session: E2eSession, images: TourImages, visit: Visit): Promise<void> {
  const url = session.host.url;
  await page.goto(url);
  await page.getByLabel('Image path').waitFor();
  await visit('home');

  await page.getByRole('button', { name: 'New image…' }).click();
  await page.locator('.format-choice').first().waitFor();
  await visit('new-format');
  await page.locator('.format-choice[data-format="qcow2"]').click();
  await page.getByLabel('Virtual size').waitFor();
  await page.locator('details.advanced summary').first().click();
  const target = page.getByLabel('Save as');
  await target.fill(session.work.path('tour-new.qcow2'));
  await target.blur();
  await page.getByText(/free in that folder/).waitFor();
  await visit('new-details');
  await page.getByRole('button', { name: 'Review' }).click();
  await page.getByTestId('review').waitFor();
  await visit('new-review');

  await open(page, url, images.img, 'vm.qcow2');
  await mapDrawn(page);
  await visit('inspect');
  await page.getByRole('button', { name: 'Change base…' }).click();
  await page.getByLabel('New base image').waitFor();
  await visit('inspect-change-base');

  await open(page, url, images.img, 'vm.qcow2');
  await page.getByRole('button', { name: 'Convert…' }).click();
  await page.locator('.format-choice[data-format="vmdk"]').waitFor();
  await visit('convert-target');
  // For a hypervisor: ESXi's own choices (the VMDK layout, the SCSI controller).
  await page.locator('.host-target[data-target="esxi"]').click();
  await page.getByLabel('SCSI controller of the VM').waitFor();
  await visit('convert-esxi');
  await page.locator('.format-choice[data-format="vmdk"]').click();
  const saveAs = page.getByLabel('Save as');
  await saveAs.waitFor();
  await saveAs.fill(session.work.path('tour-out.vmdk'));
  await saveAs.blur();
  await visit('convert-options');
  await page.getByRole('button', { name: 'Review' }).click();
  await page.getByTestId('review').waitFor();
  await visit('convert-review');

  await open(page, url, images.img, 'vm.qcow2');
  await page.getByTestId('open-snapshots').click();
  await page.getByRole('heading', { name: 'Snapshots of vm.qcow2', level: 1 }).waitFor();
  await page.getByTestId('timeline').getByText('counting…').first().waitFor({ state: 'detached' });
  await visit('snapshots');
  await page.getByTestId('take').click();
  await page.getByLabel('Name', { exact: true }).waitFor();
  await visit('snapshots-take');

  await open(page, url, images.img, 'vm.qcow2');
  await page.getByRole('button', { name: 'Check & Repair…' }).click();
  await page.getByRole('heading', { name: 'The image is clean' }).waitFor();
  await visit('check-clean');

  await open(page, url, images.leaky, 'leaky.qcow2');
  await page.getByRole('button', { name: 'Check & Repair…' }).click();
  await page.getByTestId('findings').getByRole('heading', { level: 2 }).waitFor();
  await visit('check-findings');

  await open(page, url, images.fs, 'fs.qcow2');
  await page.getByTestId('open-compact').click();
  await page.getByTestId('compact-map').locator('.legend-item[data-kind="freeInFs"]').waitFor({ timeout: 30_000 });
  await visit('compact-preview');

  // Image views of other formats: a split VMDK's extents, a Parallels header, a differencing VHD's parent.
  await open(page, url, images.splitVmdk, 'split.vmdk');
  await page.getByRole('table', { name: 'Extents' }).waitFor();
  await mapDrawn(page);
  await visit('inspect-vmdk');
  await open(page, url, images.parallels, 'disk.hds');
  await mapDrawn(page);
  await visit('inspect-parallels');

  await open(page, url, images.diffVhd, 'diff.vhd');
  await mapDrawn(page);
  await visit('inspect-vhd');
  await page.getByTestId('open-compact').click();
  await page.getByTestId('in-place-refused').waitFor({ timeout: 30_000 });
  await visit('compact-refused');

  // Home again, now with images in Recent.
  await page.goto(url);
  await page.getByRole('heading', { name: 'Recent images' }).waitFor();
  await visit('home-recent');
}
