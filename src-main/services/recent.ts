/**
 * The images a person opened lately, kept per user in the app's data folder (Electron's userData, the
 * browser host's config folder) as a small JSON list, newest first. Without a file it is kept in memory for
 * this launch only (tests, and a host started without a config folder).
 */
import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';

const KEEP = 12;

export class RecentImages {
  private list: string[] | undefined;
  private saving: Promise<void> = Promise.resolve();
  constructor(private readonly file?: string) {}

  async all(): Promise<string[]> {
    if (this.list) return [...this.list];
    let loaded: unknown = [];
    if (this.file) loaded = JSON.parse(await fsp.readFile(this.file, 'utf8').catch(() => '[]')) as unknown;
    // A damaged or foreign file is not worth an error: start again with what makes sense in it.
    this.list = Array.isArray(loaded) ? loaded.filter((p): p is string => typeof p === 'string' && p.length > 0 && !p.includes('\0')).slice(0, KEEP) : [];
    return [...this.list];
  }

  /** Puts `path` first; written in the background (a failure to save only loses the list). */
  async remember(path: string): Promise<void> {
    const list = (await this.all()).filter((p) => p !== path);
    this.list = [path, ...list].slice(0, KEEP);
    const file = this.file;
    if (!file) return;
    const text = JSON.stringify(this.list, null, 2);
    this.saving = this.saving.then(async () => {
      await fsp.mkdir(nodePath.dirname(file), { recursive: true });
      const tmp = `${file}.tmp`;
      await fsp.writeFile(tmp, text);
      await fsp.rename(tmp, file);
    }).catch(() => undefined);
    await this.saving;
  }
}

/** The browser host's config folder: $XDG_CONFIG_HOME/diskwright, else ~/.config/diskwright. */
export function hostConfigDir(): string {
  const base = process.env.XDG_CONFIG_HOME || nodePath.join(process.env.HOME ?? '.', '.config');
  return nodePath.join(base, 'diskwright');
}
