/**
 * qemu-img's `--object secret,...`: named secrets that other options refer to by id (`encrypt.key-secret=ID`).
 * The forms qemu 7.2 takes: `secret,id=ID,data=STRING` (the text itself: visible in the process list, as qemu
 * warns), `secret,id=ID,file=PATH` (the file's bytes), either with `format=raw|base64`; the JSON form
 * `{"qom-type":"secret","id":...}` too. A secret's bytes live here only while the command runs and are wiped at
 * its end (wipeSecrets); they are put in the keyring under an image's path, never in a request, a message or a file.
 */
import { readFileSync } from 'node:fs';
import { DiskError, toDiskError } from '../block/errors';
import { splitOptionString } from '../services/options';

const secrets = new Map<string, Uint8Array>();

/** Reads one `--object` value and holds the secret it defines. */
export function addObject(text: string): void {
  const fields = objectFields(text);
  const type = fields.get('qom-type');
  if (type !== 'secret') {
    throw new DiskError('EINVAL', `--object: only secret objects are supported (secret,id=ID,data=...|file=...), not '${type ?? text.split(',')[0]}'`);
  }
  const id = fields.get('id');
  if (!id) throw new DiskError('EINVAL', "--object secret: Parameter 'id' is missing");
  for (const k of fields.keys()) {
    if (k === 'keyid' || k === 'iv') throw new DiskError('EUNSUPPORTED', `--object secret ${id}: secrets encrypted with another secret (keyid, iv) are not supported; give the passphrase itself`);
    if (!['qom-type', 'id', 'data', 'file', 'format', 'loaded'].includes(k)) throw new DiskError('EINVAL', `--object secret ${id}: unknown property '${k}'`);
  }
  if (secrets.has(id)) throw new DiskError('EINVAL', `--object secret: attempt to add duplicate property '${id}'`);
  const data = fields.get('data');
  const file = fields.get('file');
  if (data !== undefined && file !== undefined) throw new DiskError('EINVAL', `--object secret ${id}: 'data' and 'file' are mutually exclusive`);
  if (data === undefined && file === undefined) throw new DiskError('EINVAL', `--object secret ${id}: either 'data' or 'file' must be provided`);
  const format = fields.get('format') ?? 'raw';
  if (format !== 'raw' && format !== 'base64') throw new DiskError('EINVAL', `--object secret ${id}: format must be raw or base64, not '${format}'`);
  let bytes: Buffer;
  if (file !== undefined) {
    try {
      bytes = readFileSync(file);
    } catch (err) {
      throw toDiskError(err, file);
    }
  } else bytes = Buffer.from(data!, 'utf8');
  if (format === 'base64') {
    const text = bytes.toString('latin1').trim();
    bytes.fill(0);
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) throw new DiskError('EINVAL', `--object secret ${id}: the data is not valid base64`);
    bytes = Buffer.from(text, 'base64');
  }
  secrets.set(id, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length));
}

/** `--object` in qemu's key=value form (the first bare word is the type) or its JSON form. */
function objectFields(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  if (text.trimStart().startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new DiskError('EINVAL', '--object: the JSON form could not be parsed');
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new DiskError('EINVAL', '--object: the JSON form must be an object');
    for (const [k, v] of Object.entries(parsed)) {
      if (typeof v !== 'string') throw new DiskError('EINVAL', `--object: property '${k}' must be a string`);
      fields.set(k, v);
    }
    return fields;
  }
  const pairs = splitOptionString(text);
  if (pairs.length && pairs[0][1] === undefined) {
    fields.set('qom-type', pairs[0][0]);
    pairs.shift();
  }
  for (const [k, v] of pairs) {
    if (v === undefined) throw new DiskError('EINVAL', `--object: '${k}' needs a value (${k}=...)`);
    fields.set(k, v);
  }
  return fields;
}

/** The bytes of the secret `id`; an unknown id is refused as qemu refuses it. */
export function secretBytes(id: string): Uint8Array {
  const s = secrets.get(id);
  if (!s) throw new DiskError('EINVAL', `No secret with id '${id}' (give --object secret,id=${id},file=PATH)`);
  return s;
}

/** Wipes and drops every secret (the command's end). */
export function wipeSecrets(): void {
  for (const s of secrets.values()) s.fill(0);
  secrets.clear();
}
