/** Chromium for the end-to-end tests: Debian's binary, headless, a fresh profile per launch, 1280×800. */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright';
import { startHost, type Host } from '../../src-main/host/server';
import { ROOT, scratch } from '../helpers';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

export interface Browser {
  context: BrowserContext;
  page: Page;
  /** Console errors and uncaught exceptions seen so far (CSP violations show up here too). */
  problems: string[];
  close(): Promise<void>;
}

export async function launch(): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), 'dw-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--headless',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
    viewport: { width: 1280, height: 800 },
    deviceScaleFactor: 1,
    locale: 'en-US',
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const problems: string[] = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(msg.text());
  });
  page.on('pageerror', (err) => problems.push(`uncaught: ${err.message}`));
  return {
    context,
    page,
    problems,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Where the end-to-end tests save their screenshots. */
export const SHOTS = join(ROOT, 'test-results', 'e2e');

export interface E2eSession {
  readonly host: Host;
  readonly browser: Browser;
  /** A scratch folder for the file's images. */
  readonly work: ReturnType<typeof scratch>;
}

/**
 * The usual frame of an end-to-end test file: a browser host and a Chromium started before its tests, a
 * scratch folder, all stopped after them. Read the fields inside tests (they are set in `before`).
 */
export function e2eSession(prefix: string): E2eSession {
  let host: Host | undefined;
  let browser: Browser | undefined;
  const work = scratch(prefix);
  before(async () => {
    host = await startHost({ port: 0 });
    browser = await launch();
    mkdirSync(SHOTS, { recursive: true });
  });
  // A failed test leaves what the page showed: a wait that timed out says only what it waited for, and a
  // flake seen once under the full run's load is otherwise gone. The screenshot and the page's alerts say why.
  afterEach(async (t) => {
    // TestContext.passed (Node 20.12+) is not in this @types/node; without it nothing is left.
    if ((t as unknown as { passed?: boolean }).passed !== false || !browser) return;
    const page = browser.page;
    const name = t.name.replace(/[^A-Za-z0-9]+/g, '-').slice(0, 60);
    const alerts = await page.getByRole('alert').allInnerTexts().catch(() => [] as string[]);
    console.error(`e2e failure '${t.name}': the page was at ${page.url()}; alerts: ${JSON.stringify(alerts)}; problems: ${JSON.stringify(browser.problems)}`);
    await page.screenshot({ path: join(SHOTS, `FAILED-${prefix}${name}.png`), fullPage: true }).catch(() => undefined);
  });
  after(async () => {
    await browser?.close();
    await host?.close();
    work.cleanup();
  });
  return {
    get host() {
      return host!;
    },
    get browser() {
      return browser!;
    },
    work,
  };
}
