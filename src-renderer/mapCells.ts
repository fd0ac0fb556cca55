/** The maps' grid of cells (AllocationMap, SnapshotDiffMap): the canvas they draw on, and which cell the pointer is over. */

export interface CellGrid {
  columns: number;
  /** A cell and the gap after it, in drawn pixels. */
  pitch: number;
  /** Space around the grid, in drawn pixels (the allocation map keeps room for its focus ring). */
  pad: number;
  /** The drawn size of the canvas (CSS may show it scaled). */
  width: number;
  height: number;
  cells: number;
}

/** The index of the cell under the pointer, or null outside the grid. */
export function cellAt(e: MouseEvent, canvas: HTMLCanvasElement, g: CellGrid): number | null {
  const r = canvas.getBoundingClientRect();
  const col = Math.floor(((e.clientX - r.left) * (g.width / r.width) - g.pad) / g.pitch);
  const row = Math.floor(((e.clientY - r.top) * (g.height / r.height) - g.pad) / g.pitch);
  const i = row * g.columns + col;
  return col >= 0 && col < g.columns && i >= 0 && i < g.cells ? i : null;
}

/**
 * Sizes the canvas for the screen's pixel density and returns its context, cleared and scaled so that drawing
 * happens in `width` x `height` drawn pixels; undefined when there is nothing to draw on. `scale`: the canvas is
 * shown that many times its drawn size (a map stretched to its card), so it gets as many more pixels and stays sharp.
 */
export function prepareCanvas(el: HTMLCanvasElement | null | undefined, width: number, height: number, scale = 1): CanvasRenderingContext2D | undefined {
  if (!el) return undefined;
  const dpr = (window.devicePixelRatio || 1) * scale;
  el.width = Math.round(width * dpr);
  el.height = Math.round(height * dpr);
  const ctx = el.getContext('2d');
  if (!ctx) return undefined;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  return ctx;
}
