/**
 * A map that spans its box (Compact's card, the Snapshots card): its grid keeps 64 columns and is drawn that
 * many times larger (or smaller) to reach the box's width, followed as the window changes. Below half size it
 * keeps half size and scrolls. Maps with overlays on their pixels (Inspect's partition outlines) do not fill.
 */
import { computed, onBeforeUnmount, onMounted, ref, type Ref } from 'vue';

const MIN_SCALE = 0.5;

/** `root`: the map's outer box (its template ref); the answer: drawn pixels to CSS pixels (1 when not filling). */
export function useFillScale(root: Ref<HTMLElement | null>, fill: () => boolean, drawnWidth: number): Ref<number> {
  const available = ref(drawnWidth);
  let resizes: ResizeObserver | undefined;
  onMounted(() => {
    if (!fill() || !root.value || typeof ResizeObserver !== 'function') return;
    available.value = root.value.clientWidth || drawnWidth;
    resizes = new ResizeObserver((entries) => {
      const w = entries[0]?.contentRect.width;
      if (w) available.value = w;
    });
    resizes.observe(root.value);
  });
  onBeforeUnmount(() => resizes?.disconnect());
  return computed(() => (fill() ? Math.max(MIN_SCALE, available.value / drawnWidth) : 1));
}
