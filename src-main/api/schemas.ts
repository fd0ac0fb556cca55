/**
 * Schemas for the arguments of every contract method. Whatever arrives over IPC or the WebSocket is
 * untrusted: it is parsed here before any service sees it, and a bad argument becomes one plain EINVAL.
 */
import { z } from 'zod';
import type { ApiArgs, ApiMethod, FormatName } from '../../src-shared/api';
import { FORMAT_NAMES, HOST_TARGET_NAMES, type HostTargetName } from '../../src-shared/api';
import { DiskError } from '../block/errors';

/** Windows' long-path limit; Linux stops at 4096, but a path is checked by the OS anyway. */
const MAX_PATH_CHARS = 32767;

export const pathSchema = z
  .string({ error: 'a path must be text' })
  .min(1, 'the path is empty')
  .max(MAX_PATH_CHARS, 'the path is too long')
  .refine((s) => !s.includes('\0'), 'the path contains a NUL character');

export const formatSchema = z.enum(FORMAT_NAMES as readonly [FormatName, ...FormatName[]], {
  error: `the format must be one of ${FORMAT_NAMES.join(', ')}`,
});

export const hostTargetSchema = z.enum(HOST_TARGET_NAMES as readonly [HostTargetName, ...HostTargetName[]], {
  error: `the target must be one of ${HOST_TARGET_NAMES.join(', ')}`,
});

const hostChoiceSchema = z.strictObject({
  subformat: z.enum(['streamOptimized', 'monolithicSparse']).optional(),
  adapter: z.enum(['lsilogic', 'pvscsi']).optional(),
  logicalSector4k: z.boolean().optional(),
});

export const bucketsSchema = z
  .number({ error: 'the bucket count must be a number' })
  .int('the bucket count must be a whole number')
  .min(1, 'the bucket count must be at least 1')
  .max(4096, 'the bucket count must be at most 4096');

const sizeSchema = z
  .number({ error: 'the size must be a number' })
  .int('the size must be a whole number of bytes')
  .min(0, 'the size cannot be negative')
  .max(Number.MAX_SAFE_INTEGER, 'the size is too large');

/** A snapshot's id or name, as qemu-img takes it (ids are digits; names any text but NUL). */
const snapshotKeySchema = z
  .string({ error: 'a snapshot must be named by its id or name' })
  .min(1, 'the snapshot id or name is empty')
  .max(65535, 'the snapshot name is too long')
  .refine((s) => !s.includes('\0'), 'the snapshot name contains a NUL character');

/** A new snapshot's name. */
const snapshotNameSchema = snapshotKeySchema;

const optionValuesSchema = z.record(
  z.string().min(1).max(256),
  z.union([z.string().max(MAX_PATH_CHARS), z.number().refine(Number.isFinite, 'an option value must be a finite number'), z.boolean()]),
  { error: 'options must be a map of names to text, numbers or on/off values' },
);

/** A partition as sfdisk numbers it (0: a whole-disk file system); MBR logical partitions stop at 4 + 256. */
const partitionSchema = z
  .number({ error: 'a partition must be named by its number' })
  .int('a partition number is a whole number')
  .min(0, 'a partition number cannot be negative')
  .max(1 << 20, 'there is no partition with so large a number');

/** A path inside a file system on the disk ('/', '/etc/hosts'). */
const innerPathSchema = z
  .string({ error: 'a path inside the disk must be text' })
  .min(1, 'the path inside the disk is empty')
  .max(MAX_PATH_CHARS, 'the path inside the disk is too long')
  .refine((s) => !s.includes('\0'), 'the path inside the disk contains a NUL character');

export const jobSpecSchema = z.discriminatedUnion(
  'kind',
  [
    z.strictObject({ kind: z.literal('inspect'), path: pathSchema }),
    z.strictObject({ kind: z.literal('map'), path: pathSchema, buckets: bucketsSchema }),
    z.strictObject({
      kind: z.literal('create'),
      path: pathSchema,
      format: formatSchema,
      size: sizeSchema,
      options: optionValuesSchema,
      backing: pathSchema.optional(),
      backingFormat: formatSchema.optional(),
      replace: z.boolean().optional(),
      replaceNotImage: z.boolean().optional(),
    }),
    z.strictObject({ kind: z.literal('check'), path: pathSchema, repair: z.enum(['leaks', 'all']).optional() }),
    z.strictObject({ kind: z.literal('repair'), path: pathSchema, mode: z.enum(['leaks', 'all']), keepCopy: z.boolean(), target: pathSchema.optional() }),
    z.strictObject({ kind: z.literal('checksum'), path: pathSchema, format: formatSchema.optional() }),
    z.strictObject({ kind: z.literal('compare'), a: pathSchema, b: pathSchema, formatB: formatSchema.optional(), snapshotA: snapshotKeySchema.optional() }),
    z.strictObject({
      kind: z.literal('convert'),
      source: pathSchema,
      target: pathSchema,
      targetFormat: formatSchema,
      options: optionValuesSchema,
      compress: z.boolean().optional(),
      snapshot: snapshotKeySchema.optional(),
      keepSnapshots: z.boolean().optional(),
      hostTarget: hostTargetSchema.optional(),
      hostChoice: hostChoiceSchema.optional(),
    }),
    z.strictObject({ kind: z.literal('snapshot-create'), path: pathSchema, name: snapshotNameSchema }),
    z.strictObject({ kind: z.literal('snapshot-apply'), path: pathSchema, snapshot: snapshotKeySchema, saveCurrentAs: snapshotNameSchema.optional() }),
    z.strictObject({ kind: z.literal('snapshot-delete'), path: pathSchema, snapshot: snapshotKeySchema }),
    z.strictObject({ kind: z.literal('commit'), path: pathSchema, keepOverlay: z.boolean().optional() }),
    z.strictObject({ kind: z.literal('rebase'), path: pathSchema, newBacking: pathSchema, newBackingFormat: formatSchema.optional(), unsafe: z.boolean().optional() }),
    z.strictObject({ kind: z.literal('inside-copy'), path: pathSchema, partition: partitionSchema, inner: innerPathSchema, target: pathSchema }),
    z.strictObject({ kind: z.literal('sparsify'), path: pathSchema, mode: z.enum(['preview', 'new', 'in-place']), target: pathSchema.optional(), targetFormat: formatSchema.optional(), keepCopy: z.boolean().optional() }),
  ],
  { error: 'the job must be one of inspect, map, create, check, repair, compare, checksum, convert, snapshot-create, snapshot-apply, snapshot-delete, commit, rebase, inside-copy or sparsify, with its fields' },
);

/**
 * A passphrase as typed. qemu reads a secret as a C string (up to its first NUL), so a NUL would silently cut it;
 * the messages never quote the value.
 */
const passphraseSchema = z
  .string({ error: 'a passphrase must be text' })
  .min(1, 'the passphrase is empty')
  .max(4096, 'the passphrase is too long (at most 4096 characters)')
  .refine((s) => !s.includes('\0'), 'the passphrase contains a NUL character');

const jobIdSchema = z.string({ error: 'a job id must be text' }).min(1, 'the job id is empty').max(128, 'the job id is too long');

/** One tuple schema per method; the mapped type keeps each in step with the contract's parameter list. */
export const ARG_SCHEMAS: { [M in ApiMethod]: z.ZodType<ApiArgs<M>> } = {
  // The format may be left out, or (over JSON) be an explicit null standing for "probe it".
  inspect: z.tuple([pathSchema, formatSchema.nullish()]).transform(([p, f]): ApiArgs<'inspect'> => (f == null ? [p] : [p, f])),
  mapPicture: z.tuple([pathSchema, bucketsSchema]),
  allowBackingPath: z.tuple([pathSchema, pathSchema]),
  formats: z.tuple([]),
  recentImages: z.tuple([]),
  createOptions: z.tuple([formatSchema]),
  // listDir() may come with no argument, or (over JSON) an explicit null standing for "my home folder".
  listDir: z.tuple([pathSchema.nullish()]).transform(([p]): ApiArgs<'listDir'> => (p == null ? [] : [p])),
  pickImage: z.tuple([]),
  pickTarget: z.tuple([z.string({ error: 'a file name must be text' }).max(255, 'the file name is too long')]),
  targetInfo: z.tuple([pathSchema]),
  readWhileInUse: z.tuple([pathSchema]),
  snapshots: z.tuple([pathSchema]),
  snapshotSpace: z.tuple([pathSchema]),
  snapshotMap: z.tuple([pathSchema, snapshotKeySchema, bucketsSchema]),
  // b null: the image now.
  snapshotDiff: z.tuple([pathSchema, snapshotKeySchema, snapshotKeySchema.nullable(), bucketsSchema]),
  measure: z.tuple([
    z.strictObject({ format: formatSchema, options: optionValuesSchema, source: pathSchema.optional(), size: sizeSchema.optional() }, { error: 'measure takes a format, its options, and a source or a size' }),
  ]),
  commitPlan: z.tuple([pathSchema]),
  rebasePlan: z.tuple([pathSchema, pathSchema]),
  hostTargets: z.tuple([]),
  hostTargetPlan: z.tuple([pathSchema, hostTargetSchema, hostChoiceSchema]),
  readyFor: z.tuple([pathSchema, hostTargetSchema]),
  partitions: z.tuple([pathSchema]),
  insideList: z.tuple([pathSchema, partitionSchema, innerPathSchema]),
  insideFree: z.tuple([pathSchema, bucketsSchema]),
  startJob: z.tuple([jobSpecSchema]),
  cancelJob: z.tuple([jobIdSchema]),
  unlockImage: z.tuple([pathSchema, passphraseSchema]),
  setTargetKey: z.tuple([pathSchema, passphraseSchema]),
  forgetImageKey: z.tuple([pathSchema]),
};

export function isApiMethod(name: unknown): name is ApiMethod {
  return typeof name === 'string' && Object.prototype.hasOwnProperty.call(ARG_SCHEMAS, name);
}

/** Validates the arguments of a call; throws DiskError EINVAL naming the method and the first problem. */
export function parseArgs<M extends ApiMethod>(method: M, args: unknown): ApiArgs<M> {
  const schema = ARG_SCHEMAS[method] as z.ZodType<ApiArgs<M>>;
  const r = schema.safeParse(args);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw new DiskError('EINVAL', `${method}: ${issue ? describeIssue(issue) : 'invalid arguments'}`);
}

/** One zod issue in plain words, naming the argument (counted from 1) and the field it is about. */
function describeIssue(issue: z.core.$ZodIssue): string {
  const [first, ...rest] = issue.path;
  const where = typeof first === 'number' ? ` (argument ${first + 1}${rest.length ? `, field ${rest.map(String).join('.')}` : ''})` : '';
  if (issue.path.length === 0) {
    if (issue.code === 'too_big') return 'too many arguments';
    if (issue.code === 'too_small') return 'an argument is missing';
    if (issue.code === 'invalid_type') return 'the arguments must be a list';
  }
  if (issue.code === 'unrecognized_keys') return `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.join(', ')}${where}`;
  return `${issue.message}${where}`;
}
