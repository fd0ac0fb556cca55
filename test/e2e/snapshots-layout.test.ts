/**
 * The snapshot list's rows (issue 25 item 9): every card, "Now" included, as wide as the others and filling the
 * list (no quarter left empty), and "compare with selected" beside its card, not on a line of its own under it;
 * the header's "Take snapshot…" and the cards below keep their distance (layout.ts). At 1280×800 and 800×600.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { must, qemuIo } from '../helpers';
import { e2eSession, SHOTS, test } from './browser';
import { layoutDefects } from './layout';

const session = e2eSession('dw-e2e-snaplayout-');

interface Row {
  name: string;
  card: { left: number; right: number; top: number; bottom: number };
  compare: { left: number; right: number; top: number; bottom: number } | null;
}

const ROWS = `(() => {
  const list = document.querySelector('[data-testid="timeline"]');
  const box = (el) => { const r = el.getBoundingClientRect(); return { left: r.left, right: r.right, top: r.top, bottom: r.bottom }; };
  const inner = list.getBoundingClientRect();
  return {
    list: { left: inner.left, right: inner.right - (list.offsetWidth - list.clientWidth) },
    rows: Array.from(list.children).map((li) => ({
      name: li.querySelector('.timeline-name').textContent.trim(),
      card: box(li.querySelector('.timeline-card')),
      compare: li.querySelector('.compare-button') ? box(li.querySelector('.compare-button')) : null,
    })),
  };
})()`;

test('snapshot rows: one width for every card and Now, filling the list, compare beside the card', async () => {
  const img = session.work.path('vm.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '64M']);
  for (const name of ['installed', 'configured', 'upgraded']) {
    qemuIo(img, 'qcow2', [`write -P 0x5${name.length % 10} ${name.length}M 1M`]);
    must('qemu-img', ['snapshot', '-c', name, img]);
  }
  const { page } = session.browser;
  await page.goto(session.host.url);
  await page.getByLabel('Image path').fill(img);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  await page.getByRole('heading', { name: 'vm.qcow2', level: 1 }).waitFor();
  await page.getByTestId('open-snapshots').click();
  const timeline = page.getByTestId('timeline');
  await timeline.locator('[data-snapshot="configured"]').click();
  await page.locator('[data-compare="now"]').waitFor();
  await timeline.getByText('counting…').first().waitFor({ state: 'detached' });
  await page.getByText('Drawing…').waitFor({ state: 'detached' });

  for (const size of [{ width: 1280, height: 800 }, { width: 800, height: 600 }]) {
    await page.setViewportSize(size);
    await page.waitForTimeout(100);
    await page.screenshot({ path: join(SHOTS, `snapshots-rows-${size.width}.png`), fullPage: true });
    const { list, rows } = (await page.evaluate(ROWS)) as { list: { left: number; right: number }; rows: Row[] };
    assert.deepEqual(rows.map((r) => r.name), ['installed', 'configured', 'upgraded', 'Now']);
    const widths = rows.map((r) => Math.round(r.card.right - r.card.left));
    for (const w of widths) assert.ok(Math.abs(w - widths[0]) <= 1, `${size.width}: every card one width, Now too: ${widths.join(', ')}`);
    assert.ok(widths[0] >= 0.7 * (list.right - list.left), `${size.width}: the cards fill the list (${widths[0]} of ${list.right - list.left} px)`);
    for (const r of rows) {
      if (r.name === 'configured') {
        assert.equal(r.compare, null, 'the selected row offers no compare with itself');
        continue;
      }
      assert.ok(r.compare, `${r.name} offers compare`);
      assert.ok(r.compare.left >= r.card.right, `${size.width}: ${r.name}'s compare is beside its card, not under it`);
      assert.ok(r.compare.top >= r.card.top - 1 && r.compare.bottom <= r.card.bottom + 1, `${size.width}: ${r.name}'s compare is on the card's row`);
    }
    assert.deepEqual(await layoutDefects(page), [], `${size.width}: no layout defect`);
  }
  assert.deepEqual(session.browser.problems, []);
});
