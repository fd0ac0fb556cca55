/** Chromium for the end-to-end tests: Debian's binary, headless, a fresh profile per launch, 1280×800. */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, test as nodeTest, type TestContext } from 'node:test';
import { chromium, type BrowserContext, type Locator, type Page } from 'playwright';
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

/**
 * What the page shows, in one line for a failure's message: its address, its level-1 headings, its alerts and
 * busy buttons, and the image path field. CI keeps a failed test's message, not its screenshot or its output.
 */
export async function pageState(page: Page): Promise<string> {
  const texts = (l: Locator) => l.allInnerTexts().then((all) => all.map((s) => s.trim().replace(/\s+/g, ' ').slice(0, 200)), () => ['?']);
  const [headings, alerts, buttons, path] = await Promise.all([
    texts(page.getByRole('heading', { level: 1 })),
    texts(page.getByRole('alert')),
    texts(page.locator('button:disabled')),
    page.locator('#image-path').inputValue({ timeout: 500 }).catch(() => '(no path field)'),
  ]);
  return `the page was at ${page.url()}; headings: ${JSON.stringify(headings)}; alerts: ${JSON.stringify(alerts)}; disabled buttons: ${JSON.stringify(buttons)}; path field: ${JSON.stringify(path)}`;
}

/** Waits for `target` to be visible; a timeout's message says what the page showed instead. */
export async function shown(page: Page, target: Locator, timeout?: number): Promise<void> {
  try {
    await target.waitFor({ timeout });
  } catch (err) {
    throw new Error(`${(err as Error).message.split('\n')[0]}: waiting for ${String(target)}; ${await pageState(page)}`);
  }
}

/** The page of this file's session (e2eSession), for what a failed test's message says; one session per file. */
let sessionPage: (() => Page | undefined) | undefined;

type TestFn = (t: TestContext) => void | Promise<void>;

/**
 * node:test's test, whose failure message ends with what the page showed (pageState): CI keeps a failed
 * test's message and nothing else, and a wait that timed out says only what it waited for. The e2e files take
 * `test` from here.
 */
export function test(name: string, fn: TestFn): Promise<void>;
export function test(name: string, options: { skip?: boolean | string; timeout?: number }, fn: TestFn): Promise<void>;
export function test(name: string, a: TestFn | { skip?: boolean | string; timeout?: number }, b?: TestFn): Promise<void> {
  const fn = (typeof a === 'function' ? a : b)!;
  const described = async (t: TestContext): Promise<void> => {
    try {
      await fn(t);
    } catch (err) {
      const page = sessionPage?.();
      if (page && err instanceof Error && !err.message.includes('the page was at')) {
        err.message += `\n(${await pageState(page)})`;
      }
      throw err;
    }
  };
  return typeof a === 'function' ? nodeTest(name, described) : nodeTest(name, a, described);
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
    sessionPage = () => browser?.page;
    mkdirSync(SHOTS, { recursive: true });
  });
  // A failed test leaves what the page showed: a wait that timed out says only what it waited for, and a
  // flake seen once under the full run's load is otherwise gone. The screenshot and the page's alerts say why.
  afterEach(async (t) => {
    // TestContext.passed (Node 20.12+) is not in this @types/node; without it nothing is left.
    if ((t as unknown as { passed?: boolean }).passed !== false || !browser) return;
    const page = browser.page;
    const name = t.name.replace(/[^A-Za-z0-9]+/g, '-').slice(0, 60);
    console.error(`e2e failure '${t.name}': problems: ${JSON.stringify(browser.problems)}`);
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
