/** Number and size formatting for people. Fixed to en-US so figures read the same everywhere. */
const grouped = new Intl.NumberFormat('en-US');
const UNITS = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** 67108864 → "64 MiB"; 1536 → "1.5 KiB"; 512 → "512 bytes". */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 1024) return `${grouped.format(n)} ${n === 1 ? 'byte' : 'bytes'}`;
  let unit = 0;
  let v = n;
  while (v >= 1024 && unit < UNITS.length - 1) {
    v /= 1024;
    unit++;
  }
  const text = v >= 100 || Number.isInteger(v) ? Math.round(v).toString() : v.toFixed(v >= 10 ? 1 : 2).replace(/\.?0+$/, '');
  return `${text} ${UNITS[unit]}`;
}

/** 67108864 → "67,108,864 bytes". */
export function formatExactBytes(n: number): string {
  return `${grouped.format(n)} ${n === 1 ? 'byte' : 'bytes'}`;
}

/** A share as a percentage with one decimal: 0.125 → "12.5%". */
export function formatPercent(share: number): string {
  return `${(share * 100).toFixed(1)}%`;
}

export function formatDate(sec: number): string {
  const d = new Date(sec * 1000);
  const pad = (x: number) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A VM clock as h:mm:ss.mmm. */
export function formatClock(sec: number, nsec: number): string {
  const ms = Math.floor(nsec / 1e6);
  const h = Math.floor(sec / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = sec % 60;
  return `${h}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}.${String(ms).padStart(3, '0')}`;
}

/** The last part of a path, for titles; both separators, since the host may run on Windows. */
export function baseName(path: string): string {
  const parts = path.split(/[\\/]/).filter(Boolean);
  return parts.length ? parts[parts.length - 1] : path;
}

/** "lazy-refcounts" → "Lazy refcounts". */
export function humanKey(key: string): string {
  const words = key.replace(/[-_]/g, ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
}
