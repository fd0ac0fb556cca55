/**
 * The allocation map's colours and cell grid, in one place: AllocationMap draws with them, the partition bar
 * and the "free in the file system" layer (components/inside/) line up with and colour by them, and the e2e
 * tests read the picture back by them. Keep the colours opaque and distinct.
 */
export const MAP_COLOURS = {
  data: '#2f5a8c',
  backing: '#8fb0d8',
  compressed: '#7a4f9e',
  zero: '#8cc5b4',
  unallocated: '#e1e5ea',
  /** Data the image holds where its file system marks the space free: what a compaction gives back. */
  freeInFs: '#d4a21c',
} as const;
export type MapColour = keyof typeof MAP_COLOURS;

/** The grid: COLUMNS cells a row, each CELL px with GAP px after it, PAD px around (room for the focus ring). */
export const MAP_GRID = { columns: 64, cell: 10, gap: 2, pitch: 12, pad: 2 } as const;
