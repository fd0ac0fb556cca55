/** What the UML COW interop tests share: a backing file of seeded sectors and a COW file uml_mkcow makes over it. */
import { mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { must, seededRandom } from '../helpers';

/** In `dir`: back.img (`size` bytes, about half its sectors filled, a fixed mtime) and disk.cow made by uml_mkcow. */
export function cowPair(dir: string, size: number, seed: number): { back: string; cow: string } {
  mkdirSync(dir, { recursive: true });
  const rnd = seededRandom(seed);
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i += 512) if (rnd() < 0.5) b.fill((rnd() * 255 + 1) | 0, i, Math.min(size, i + 512));
  const back = `${dir}/back.img`;
  writeFileSync(back, b);
  utimesSync(back, 1700000000, 1700000000);
  const cow = `${dir}/disk.cow`;
  must('uml_mkcow', [cow, back]);
  return { back, cow };
}
