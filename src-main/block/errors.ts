import type { DiskErrorCode, DiskErrorDto } from '../../src-shared/errors';

/** The one error type that reaches a person: a code for programs and a plain message for people. */
export class DiskError extends Error {
  readonly code: DiskErrorCode;
  readonly path?: string;
  constructor(code: DiskErrorCode, message: string, path?: string) {
    super(message);
    this.name = 'DiskError';
    this.code = code;
    this.path = path;
  }
  toDto(): DiskErrorDto {
    return { code: this.code, message: this.message, ...(this.path ? { path: this.path } : {}) };
  }
}

export function corrupt(message: string, path?: string): DiskError {
  return new DiskError('ECORRUPT', message, path);
}

/** Turns whatever was thrown into a DiskError, translating Node's errno codes into plain words. */
export function toDiskError(err: unknown, path?: string): DiskError {
  if (err instanceof DiskError) return err;
  const e = err as NodeJS.ErrnoException;
  const where = path ?? e?.path;
  switch (e?.code) {
    case 'ENOENT':
      return new DiskError('ENOENT', `${where ?? 'file'}: no such file`, where);
    case 'EISDIR':
      return new DiskError('EISDIR', `${where ?? 'path'}: is a directory, not an image`, where);
    case 'EACCES':
    case 'EPERM':
      return new DiskError('EACCES', `${where ?? 'file'}: permission denied`, where);
    case 'EROFS':
      return new DiskError('EACCES', `${where ?? 'file'}: the file system is read-only`, where);
    case 'ENOSPC':
      return new DiskError('EIO', `${where ?? 'file'}: no space left on the device`, where);
    case 'EFBIG':
      return new DiskError('EIO', `${where ?? 'file'}: the file would grow past the largest file this system allows`, where);
    case 'EEXIST':
      return new DiskError('EEXIST', `${where ?? 'file'}: already exists`, where);
    case 'ABORT_ERR':
      return new DiskError('ECANCELLED', 'cancelled', where);
  }
  if (e?.name === 'AbortError') return new DiskError('ECANCELLED', 'cancelled', where);
  if (err instanceof RangeError) {
    // A raw RangeError means a size or offset from the file did not fit: the file is damaged.
    return new DiskError('ECORRUPT', `${where ? where + ': ' : ''}the image is damaged (${err.message})`, where);
  }
  if (err instanceof TypeError) {
    // A TypeError is our bug, not the file's fault: say so instead of blaming the image.
    return new DiskError('EIO', `${where ? where + ': ' : ''}internal error in diskwright (${err.message}); please report it`, where);
  }
  const msg = e?.message ?? String(err);
  return new DiskError('EIO', `${where ? where + ': ' : ''}${msg}`, where);
}

export function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new DiskError('ECANCELLED', 'cancelled');
}

/** The refusal of a write to an image opened read-only: one wording for every format. */
export function readOnlyError(path: string, what = 'opened read-only'): DiskError {
  return new DiskError('EREADONLY', `${path}: ${what}`, path);
}
