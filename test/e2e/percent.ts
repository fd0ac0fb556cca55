/**
 * A share as the app prints it (src-renderer/text.ts formatPercent): one decimal, "<0.1%" for a sliver and ">99.9%"
 * for nearly all. The tests compute the share from qemu-img's figures and compare the page's text with this.
 */
export function percentShown(share: number): string {
  if (share > 0 && share < 0.0005) return '<0.1%';
  if (share < 1 && share >= 0.9995) return '>99.9%';
  return `${(share * 100).toFixed(1)}%`;
}
