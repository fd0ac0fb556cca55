/**
 * The allocation map's colour tokens and cell grid, in one place: AllocationMap draws with them (reading each
 * token's value from tokens.css, so the map follows the theme), the partition bar and the "free in the file
 * system" layer (components/inside/) line up with and colour by them, and the e2e tests read the picture back
 * by the light theme's values. Keep the colours opaque and distinct.
 */
export const MAP_TOKENS = {
  data: 'map-data',
  backing: 'map-backing',
  compressed: 'map-compressed',
  zero: 'map-zero',
  unallocated: 'map-unallocated',
  /** Data the image holds where its file system marks the space free: what a compaction gives back. */
  freeInFs: 'map-free-in-fs',
  focus: 'map-focus',
} as const;
export type MapColour = Exclude<keyof typeof MAP_TOKENS, 'focus'>;

/** The grid: COLUMNS cells a row, each CELL px with GAP px after it, PAD px around (room for the focus ring). */
export const MAP_GRID = { columns: 64, cell: 10, gap: 2, pitch: 12, pad: 2 } as const;
