/**
 * The options every command takes before its own, as qemu-img has them: `--object secret,...` (cli/secrets.ts),
 * `--image-opts` (the image arguments are option strings: `driver=qcow2,file.filename=PATH,encrypt.key-secret=ID`)
 * and `--target-image-opts` (the same for convert's target). They are taken out of the arguments here, before a
 * command parses its own flags: an image-opts string is replaced by its file name (its driver becoming -f, or
 * -F / -O where that names the format of that image), and the secret it names goes into the keyring under that
 * file's path, where the registry finds it for every open. No request ever carries a passphrase.
 */
import { DiskError } from '../block/errors';
import { rememberKey } from '../keyring';
import { splitOptionString } from '../services/options';
import { addObject, secretBytes } from './secrets';

/** What an `--image-opts` string says about one image. */
export interface ImageOpts {
  path: string;
  driver?: string;
  /** encrypt.key-secret: the id of the secret that opens it. */
  keySecret?: string;
  /** backing.encrypt.key-secret (index 0), backing.backing.encrypt.key-secret (1), …: the keys of its backing files. */
  backingKeySecrets: Map<number, string>;
}

/** qemu-img's --image-opts keys that mean something here; the file layer's own (locking, aio, cache) are accepted and ignored. */
const IGNORED = new Set(['file.driver', 'read-only', 'force-share', 'file.locking', 'file.aio', 'cache.direct', 'cache.no-flush', 'discard', 'detect-zeroes', 'node-name', 'encrypt.format']);

/** Reads one --image-opts string; a string that names no file is not one (undefined). */
export function parseImageOpts(text: string): ImageOpts | undefined {
  if (text.startsWith('-') || !text.includes('=')) return undefined;
  const pairs = splitOptionString(text);
  if (pairs.some(([, v]) => v === undefined)) return undefined;
  const fields = new Map(pairs.map(([k, v]) => [k, v!]));
  const driver = fields.get('driver');
  // driver=file,filename=PATH is a plain file (raw); otherwise the image is file.filename.
  const path = fields.get('file.filename') ?? (driver === 'file' ? fields.get('filename') : undefined);
  if (path === undefined) return undefined;
  const out: ImageOpts = { path, driver: driver === 'file' ? 'raw' : driver, keySecret: fields.get('encrypt.key-secret'), backingKeySecrets: new Map() };
  for (const k of fields.keys()) {
    const backing = /^((?:backing\.)+)encrypt\.key-secret$/.exec(k);
    if (backing) out.backingKeySecrets.set(backing[1].length / 'backing.'.length - 1, fields.get(k)!);
    else if (k === 'file.driver' && fields.get(k) !== 'file') throw new DiskError('EUNSUPPORTED', `--image-opts: file.driver=${fields.get(k)} is not supported (only local files: file)`);
    else if (!['driver', 'file.filename', 'filename', 'encrypt.key-secret'].includes(k) && !IGNORED.has(k)) {
      throw new DiskError('EINVAL', `--image-opts: option '${k}' is not supported (driver, file.filename, encrypt.key-secret, backing.encrypt.key-secret)`);
    }
  }
  return out;
}

/** The arguments a command sees once the common options are taken out, and the images named by option strings. */
export interface CommonOptions {
  args: string[];
  images: ImageOpts[];
}

/**
 * Takes --object, --image-opts and --target-image-opts out of `args` (secrets held; image-opts strings replaced
 * by their file names, their drivers given as format flags) and puts the keys they name into the keyring.
 */
export async function takeCommonOptions(command: string, args: string[]): Promise<CommonOptions> {
  let imageOpts = false;
  let targetImageOpts = false;
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--') {
      rest.push(...args.slice(i));
      break;
    }
    if (a === '--object') {
      if (i + 1 >= args.length) throw new DiskError('EINVAL', `${command}: option --object needs a value`);
      addObject(args[++i]);
    } else if (a.startsWith('--object=')) addObject(a.slice('--object='.length));
    else if (a === '--image-opts') imageOpts = true;
    else if (a === '--target-image-opts') targetImageOpts = true;
    else rest.push(a);
  }
  if (!imageOpts && !targetImageOpts) return { args: rest, images: [] };
  if (targetImageOpts && command !== 'convert') throw new DiskError('EINVAL', `${command}: unknown option --target-image-opts (convert only)`);
  if (imageOpts && rest.some((a) => a === '-f' || /^-f[^-]/.test(a))) throw new DiskError('EINVAL', '--image-opts and --format are mutually exclusive');
  const images: ImageOpts[] = [];
  const formatFlags: string[] = [];
  const out = rest.map((a) => {
    const opts = parseImageOpts(a);
    if (!opts) return a;
    const flag = formatFlagFor(command, images.length, imageOpts, targetImageOpts);
    if (opts.driver !== undefined && flag) formatFlags.push(flag, opts.driver);
    images.push(opts);
    return opts.path;
  });
  if (!images.length) throw new DiskError('EINVAL', `${command}: --image-opts needs an image given as options (driver=qcow2,file.filename=PATH[,encrypt.key-secret=ID])`);
  if (command === 'convert' && targetImageOpts && !rest.some((a) => /^-[cpnqUW]*n[cpnqUW]*$/.test(a))) {
    throw new DiskError('EINVAL', '--target-image-opts requires use of -n flag');
  }
  for (const img of images) await rememberImageKeys(img);
  return { args: [...formatFlags, ...out], images };
}

/**
 * The flag that names the format of the `index`-th image given as options: -f for the (first) image, -F for
 * compare's second, -O for convert's target.
 */
function formatFlagFor(command: string, index: number, imageOpts: boolean, targetImageOpts: boolean): string | undefined {
  if (command === 'compare') return index === 0 ? '-f' : index === 1 ? '-F' : undefined;
  if (command === 'convert') {
    if (imageOpts && index === 0) return '-f';
    return targetImageOpts ? '-O' : undefined;
  }
  return index === 0 ? '-f' : undefined;
}

/** Puts the keys an image-opts string names into the keyring, under the image's path and its backing files' paths. */
async function rememberImageKeys(img: ImageOpts): Promise<void> {
  if (img.keySecret !== undefined) rememberKey(img.path, secretBytes(img.keySecret));
  if (!img.backingKeySecrets.size) return;
  // A backing file's path is known only from its child's header: walk the chain as far as the deepest key given.
  const { inspectImage } = await import('../services/info');
  const { resolveBackingPath } = await import('../registry');
  const deepest = Math.max(...img.backingKeySecrets.keys());
  let cur = await inspectImage(img.path, { format: img.driver });
  for (let depth = 0; depth <= deepest; depth++) {
    const name = cur['backing-filename'];
    if (name === undefined) throw new DiskError('EINVAL', `--image-opts: ${cur.filename} has no backing file to give ${'backing.'.repeat(depth + 1)}encrypt.key-secret to`);
    const full = resolveBackingPath(cur.filename, name, 'anywhere');
    const id = img.backingKeySecrets.get(depth);
    if (id !== undefined) rememberKey(full, secretBytes(id));
    if (depth < deepest) cur = await inspectImage(full, { format: cur['backing-filename-format'] });
  }
}

/**
 * The key of a new encrypted image (create, or convert's target): the secret `-o encrypt.key-secret=ID` names,
 * or, on a terminal, a passphrase typed twice; held in the keyring under the target's name, where the create
 * takes it from. Compressed clusters are refused up front, as qemu refuses them, since they are never encrypted.
 */
export async function takeTargetKey(path: string, options: Record<string, string>, compress = false): Promise<void> {
  const encrypted = options['encrypt.format'] !== undefined || ['on', 'true', 'yes', '1'].includes(options.encryption ?? '');
  if (!encrypted) return;
  if (compress) throw new DiskError('EUNSUPPORTED', 'compressed clusters (-c) cannot be written into an encrypted image: they are never encrypted (qemu refuses them too)');
  const id = options['encrypt.key-secret'];
  if (id !== undefined) return rememberKey(path, secretBytes(id));
  const { askNewPassphrase, canPrompt } = await import('./prompt');
  if (!canPrompt()) return; // the create refuses: encrypt.key-secret is required
  const key = await askNewPassphrase(path);
  if (!key) return;
  rememberKey(path, key);
  key.fill(0);
}
