/**
 * The browser host's token in a real browser (issue 26 item 7): after the first load the address bar and the
 * history entry hold no token, the page still talks to the host (its socket presents the cookie), a reload
 * still opens, and the view in the address survives the stripping. A file dropped on the browser host's
 * window is refused with a hint (a browser cannot tell a page where a file lives; issue 25).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { must } from '../helpers';
import { e2eSession, SHOTS, test } from './browser';

const session = e2eSession('dw-e2e-host-token-');

test('the token leaves the address before the app runs; the cookie keeps the page working across a reload', async () => {
  const { page, context, problems } = session.browser;
  const image = session.work.path('disk.qcow2');
  must('qemu-img', ['create', '-q', '-f', 'qcow2', image, '16M']);
  const token = new URL(session.host.url).searchParams.get('token')!;

  await page.goto(session.host.url);
  await page.getByLabel('Image path').waitFor();
  assert.equal(new URL(page.url()).searchParams.get('token'), null, `the address after load: ${page.url()}`);
  assert.ok(!page.url().includes(token), 'the token is nowhere in the address');
  // What the app's own modules saw when they started: the token was already gone.
  assert.equal(await page.evaluate('window.location.search'), '');

  // The cookie the first load set: HttpOnly (the page's script cannot read it), SameSite=Strict, Path=/.
  const cookies = await context.cookies(`http://127.0.0.1:${session.host.port}/`);
  const ours = cookies.find((c) => c.name === `diskwright-${session.host.port}`);
  assert.ok(ours, JSON.stringify(cookies));
  assert.equal(ours.httpOnly, true);
  assert.equal(ours.sameSite, 'Strict');
  assert.equal(ours.path, '/');
  assert.equal(await page.evaluate('document.cookie'), '', 'an HttpOnly cookie is invisible to scripts');

  // The app talks to the host (the socket authenticates by the cookie): opening an image works.
  await page.getByLabel('Image path').fill(image);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  await page.getByRole('heading', { name: 'disk.qcow2', level: 1 }).waitFor();
  assert.ok(!page.url().includes(token));
  assert.match(page.url(), /#\/inspect\?/);

  // A reload (no token in the address now) opens the same view.
  await page.reload();
  await page.getByRole('heading', { name: 'disk.qcow2', level: 1 }).waitFor();
  assert.ok(!page.url().includes(token));

  // The printed address with a view in its hash: the token goes, the view stays.
  await page.goto(`${session.host.url}#/inspect?path=${encodeURIComponent(image)}`);
  await page.getByRole('heading', { name: 'disk.qcow2', level: 1 }).waitFor();
  assert.equal(new URL(page.url()).search, '');
  assert.match(page.url(), /#\/inspect\?path=/);

  // No history entry of this tab holds the token: every step back lands on an address without it.
  const visited: string[] = [];
  for (let i = 0; i < 4; i++) {
    await page.goBack().catch(() => null);
    visited.push(page.url());
  }
  assert.ok(visited.some((u) => u.startsWith(`http://127.0.0.1:${session.host.port}/`)), visited.join(' '));
  for (const u of visited) assert.ok(!u.includes(token), `a history entry holds the token: ${u}`);
  assert.deepEqual(problems, []);
});

test('a file dropped on the browser host is refused with a hint, and nothing is opened', async () => {
  const { page, problems } = session.browser;
  await page.goto(session.host.url);
  await page.getByLabel('Image path').waitFor();
  // A drop as the browser makes it: a DataTransfer with one File (in-page code as a string: see the brief on tsx).
  await page.evaluate(`(() => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(512)], 'dropped.qcow2'));
    for (const type of ['dragenter', 'dragover', 'drop']) {
      window.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
    }
  })()`);
  const notice = page.getByRole('status').filter({ hasText: 'dropped.qcow2' });
  await notice.waitFor();
  const text = await notice.innerText();
  assert.match(text, /A browser does not tell a page where a dropped file lives/);
  assert.match(text, /Type its path into the Image path field/);
  await page.screenshot({ path: join(SHOTS, 'host-drop-refused.png') });
  // Still on the home screen, the drop overlay gone.
  assert.equal(await page.locator('.drop-overlay').count(), 0);
  assert.equal(await page.getByLabel('Image path').count(), 1);
  await page.getByRole('button', { name: 'Dismiss' }).click();
  assert.equal(await notice.count(), 0);
  assert.deepEqual(problems, []);
});
