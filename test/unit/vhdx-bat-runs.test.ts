/**
 * leadingMatches (formats/vhdx/bat-runs.ts) compares a BAT page with a template instead of each entry: its
 * count must be an entry-by-entry walk's, for every phase in the chunk, with mismatches at payload and at sector
 * bitmap positions, at the first entry and near the end. The VHDX interop suites prove status and map as a whole.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { leadingMatches } from '../../src-main/formats/vhdx/bat-runs';
import { seededRandom } from '../helpers';

function byEntry(page: Uint8Array, at: number, n: number, phase: number, period: number, entry: Uint8Array): number {
  for (let i = 0; i < n; i++) {
    const want = (phase + i) % period === period - 1 ? new Uint8Array(8) : entry;
    for (let k = 0; k < 8; k++) if (page[at + i * 8 + k] !== want[k]) return i;
  }
  return n;
}

test('leading entries that match a payload entry (bitmap entries zero) equal an entry-by-entry walk', () => {
  const random = seededRandom(24);
  const zeroState = Uint8Array.of(2, 0, 0, 0, 0, 0, 0, 0);
  for (let round = 0; round < 400; round++) {
    const period = [2, 5, 129, 513][round % 4];
    const entry = round % 3 === 0 ? new Uint8Array(8) : zeroState;
    const page = new Uint8Array(4096);
    const firstIndex = Math.floor(random() * 5000);
    const at = 8 * Math.floor(random() * 16);
    const n = Math.floor((4096 - at) / 8);
    // Fill as a clean run, then spoil one entry (payload or bitmap) or none.
    for (let i = 0; i < n; i++) if ((firstIndex + i) % period !== period - 1) page.set(entry, at + i * 8);
    const spoil = random() < 0.8 ? Math.floor(random() * n) : -1;
    if (spoil >= 0) page[at + spoil * 8 + Math.floor(random() * 8)] ^= 1 << Math.floor(random() * 8);
    const phase = firstIndex % period;
    assert.equal(leadingMatches(page, at, n, phase, period, entry), byEntry(page, at, n, phase, period, entry), `round ${round}`);
  }
});
