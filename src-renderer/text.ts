/** Numbers, sizes, dates and names as text for people (not disk formats). Fixed to en-US so figures read the same everywhere. */
const grouped = new Intl.NumberFormat('en-US');
const UNITS = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** 67108864 → "64 MiB"; 1536 → "1.5 KiB"; 512 → "512 bytes"; 16781312 → "≈16 MiB". */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 1024) return `${grouped.format(n)} ${n === 1 ? 'byte' : 'bytes'}`;
  let unit = 0;
  let v = n;
  while (v >= 1024 && unit < UNITS.length - 1) {
    v /= 1024;
    unit++;
  }
  const text = v >= 100 || Number.isInteger(v) ? Math.round(v).toString() : v.toFixed(v >= 10 ? 1 : 2).replace(/\.?0+$/, '');
  // A size that rounds to a whole number of units without being one says so: 16,781,312 bytes is not "16 MiB"
  // (Azure refuses it for exactly that), it is "≈16 MiB".
  const approx = !Number.isInteger(v) && /^\d+$/.test(text);
  return `${approx ? '≈' : ''}${text} ${UNITS[unit]}`;
}

/** A size in a sentence that already says "about" ("about 4 MiB"): formatBytes without its "≈". */
export function formatBytesAbout(n: number): string {
  return formatBytes(n).replace(/^≈/, '');
}

/** 67108864 → "67,108,864 bytes". */
export function formatExactBytes(n: number): string {
  return `${grouped.format(n)} ${n === 1 ? 'byte' : 'bytes'}`;
}

/**
 * A share as a percentage with one decimal: 0.125 → "12.5%". A share that rounds to 0.0% or 100.0% without
 * being either says so ("<0.1%", ">99.9%"): 2 MiB of data on a 5 GiB disk is not "0.0%".
 */
export function formatPercent(share: number): string {
  if (share > 0 && share < 0.0005) return '<0.1%';
  if (share < 1 && share >= 0.9995) return '>99.9%';
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
  // Abbreviations keep their capitals: "Extended L2", not "Extended l2".
  // qemu's dotted keys ("encrypt.cipher-alg") read as words too: "Encrypt cipher algorithm".
  const words = key
    .replace(/[-_.]/g, ' ')
    .replace(/\b(l1|l2|luks|uuid|cid|chs|iv|aes|lba)\b/gi, (w) => w.toUpperCase())
    .replace(/\balg\b/gi, 'algorithm')
    .replace(/\bivgen\b/gi, 'IV generator')
    .replace(/\biter time\b/gi, 'iteration time');
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/**
 * A byte range in one unit with as many decimals as it takes for its two ends to differ: a 64 KiB cell of a
 * big disk reads "133.0625 – 133.125 MiB", not "133 MiB – 133 MiB". Exact bytes where no unit does.
 */
/**
 * A message cut where it names a command with an option ("vmkfstools -i", "qemu-img convert -O"): the command
 * parts are kept on one line by the face, so an option is never split from its hyphen at a line's end.
 */
export function commandSegments(message: string): Array<{ text: string; command: boolean }> {
  const out: Array<{ text: string; command: boolean }> = [];
  const pattern = /[A-Za-z][\w.-]*(?: -{1,2}[A-Za-z][\w-]*)+/g;
  let at = 0;
  for (let m = pattern.exec(message); m; m = pattern.exec(message)) {
    if (m.index > at) out.push({ text: message.slice(at, m.index), command: false });
    out.push({ text: m[0], command: true });
    at = m.index + m[0].length;
  }
  if (at < message.length) out.push({ text: message.slice(at), command: false });
  return out;
}

export function formatRange(start: number, end: number): string {
  if (end < 1024) return `${grouped.format(start)} – ${formatExactBytes(end)}`;
  let unit = 0;
  while (end >= 1024 ** (unit + 1) && unit < UNITS.length - 1) unit++;
  const scale = 1024 ** unit;
  const at = (decimals: number) => [trimZeros((start / scale).toFixed(decimals)), trimZeros((end / scale).toFixed(decimals))];
  // Exact ends when a few decimals give them; else enough decimals to read the range's own length.
  for (let decimals = 0; decimals <= 4; decimals++) {
    const [a, b] = at(decimals);
    if (Number(a) * scale === start && Number(b) * scale === end) return `${a} – ${b} ${UNITS[unit]}`;
  }
  const [a, b] = at(Math.min(4, Math.max(1, Math.ceil(-Math.log10((end - start) / scale)) + 1)));
  return a !== b ? `${a} – ${b} ${UNITS[unit]}` : `${grouped.format(start)} – ${formatExactBytes(end)}`;
}

function trimZeros(text: string): string {
  return text.includes('.') ? text.replace(/\.?0+$/, '') : text;
}

/** What an image is called: its file name, or for a Parallels bundle (vm.hdd/DiskDescriptor.xml) the bundle's. */
export function imageTitle(path: string): string {
  const name = baseName(path);
  if (name !== 'DiskDescriptor.xml') return name;
  const parts = path.split(/[\\/]/).filter(Boolean);
  return parts.length > 1 ? parts[parts.length - 2] : name;
}
