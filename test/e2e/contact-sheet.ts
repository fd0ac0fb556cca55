/**
 * A contact sheet: one PNG stitching many screenshots into a labelled grid, so a person reviews the whole app at
 * a glance. Made by rendering the shots (as data: URLs) on a blank page of the test's browser and screenshotting it.
 */
import { readFileSync } from 'node:fs';
import type { BrowserContext } from 'playwright';

export interface Shot {
  label: string;
  file: string;
}

/** Writes `out`: the shots in `columns` columns, each `width` px wide, under its label. */
export async function contactSheet(context: BrowserContext, shots: Shot[], out: string, columns: number, width: number): Promise<void> {
  const page = await context.newPage();
  try {
    await page.setViewportSize({ width: columns * (width + 16) + 16, height: 600 });
    const figures = shots
      .map((s) => {
        const data = readFileSync(s.file).toString('base64');
        const label = s.label.replace(/[<&>]/g, '');
        return `<figure><figcaption>${label}</figcaption><img src="data:image/png;base64,${data}" alt="${label}"></figure>`;
      })
      .join('');
    await page.setContent(
      `<!doctype html><html><head><style>
        body { margin: 0; padding: 16px; background: #2b2f36; font: 13px system-ui, sans-serif; color: #eee; }
        main { display: grid; grid-template-columns: repeat(${columns}, ${width}px); gap: 16px; align-items: start; }
        figure { margin: 0; }
        figcaption { margin-bottom: 4px; }
        img { width: ${width}px; display: block; border: 1px solid #555; background: #fff; }
      </style></head><body><main>${figures}</main></body></html>`,
    );
    await page.waitForFunction('Array.from(document.images).every((i) => i.complete)');
    await page.screenshot({ path: out, fullPage: true });
  } finally {
    await page.close();
  }
}
