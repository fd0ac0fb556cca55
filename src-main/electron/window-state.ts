/**
 * The window's size and place, kept between launches in a small JSON file in userData. What is read back is
 * untrusted: the file is read only if small, every number must be an integer in range, and a place that no
 * longer lies on a display (a monitor unplugged) is dropped, keeping the size.
 */
import { promises as fsp, readFileSync, statSync } from 'node:fs';
import * as nodePath from 'node:path';

export interface WindowState {
  width: number;
  height: number;
  /** Absent: let the system place the window. */
  x?: number;
  y?: number;
  maximized: boolean;
}

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

export const DEFAULT_WINDOW: WindowState = { width: 1280, height: 800, maximized: false };
export const MIN_WIDTH = 880;
export const MIN_HEIGHT = 600;
const MAX_SIDE = 16384;
const MAX_COORD = 100_000;
/** Anything bigger is not a file we wrote. */
const MAX_FILE_BYTES = 4096;
/** This much of the window's title bar must lie on some display for the place to be kept. */
const VISIBLE = 64;

function intIn(v: unknown, lo: number, hi: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi;
}

/** A parsed file's content as a state, or the default; `displays` are the work areas of the displays now. */
export function validWindowState(value: unknown, displays: Rect[]): WindowState {
  if (typeof value !== 'object' || value === null) return { ...DEFAULT_WINDOW };
  const v = value as Record<string, unknown>;
  if (!intIn(v.width, MIN_WIDTH, MAX_SIDE) || !intIn(v.height, MIN_HEIGHT, MAX_SIDE)) return { ...DEFAULT_WINDOW };
  const state: WindowState = { width: v.width, height: v.height, maximized: v.maximized === true };
  if (intIn(v.x, -MAX_COORD, MAX_COORD) && intIn(v.y, -MAX_COORD, MAX_COORD) && onSomeDisplay({ x: v.x, y: v.y, width: v.width, height: v.height }, displays)) {
    state.x = v.x;
    state.y = v.y;
  }
  return state;
}

/** True when the top strip of the window (where it is grabbed) overlaps a display's work area enough. */
function onSomeDisplay(r: Rect, displays: Rect[]): boolean {
  return displays.some((d) => {
    const w = Math.min(r.x + r.width, d.x + d.width) - Math.max(r.x, d.x);
    const h = Math.min(r.y + VISIBLE, d.y + d.height) - Math.max(r.y, d.y);
    return w >= VISIBLE && h >= Math.min(VISIBLE, 32);
  });
}

/** Reads the state; a missing, oversized or malformed file gives the default. */
export function loadWindowState(file: string, displays: Rect[]): WindowState {
  try {
    if (statSync(file).size > MAX_FILE_BYTES) return { ...DEFAULT_WINDOW };
    return validWindowState(JSON.parse(readFileSync(file, 'utf8')), displays);
  } catch {
    return { ...DEFAULT_WINDOW };
  }
}

/** Writes the state beside the file and renames it into place, so a crash leaves the old or the new. */
export async function saveWindowState(file: string, bounds: Rect, maximized: boolean): Promise<void> {
  const state: WindowState = {
    width: Math.round(bounds.width),
    height: Math.round(bounds.height),
    x: Math.round(bounds.x),
    y: Math.round(bounds.y),
    maximized,
  };
  const tmp = nodePath.join(nodePath.dirname(file), `.${nodePath.basename(file)}.tmp`);
  try {
    await fsp.mkdir(nodePath.dirname(file), { recursive: true });
    await fsp.writeFile(tmp, JSON.stringify(state) + '\n', { mode: 0o600 });
    await fsp.rename(tmp, file);
  } catch {
    // Not being able to remember the window's place is no reason to fail closing it.
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
  }
}
