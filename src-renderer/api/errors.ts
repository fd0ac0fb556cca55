import type { DiskErrorCode, DiskErrorDto } from '../../src-shared/errors';

/**
 * The engine's messages are shared with the command line, and a few advise a command-line flag. In the app
 * they are said in the app's words: each rule names the CLI's wording and what the app says instead.
 */
const APP_WORDS: ReadonlyArray<readonly [RegExp, string]> = [
  // An empty file (registry's probe): the app has no -f; there is nothing to open as raw either.
  [/: the file is empty; it is not a disk image \(give -f raw to use it as one\)$/, ': the file is empty, so there is no disk image in it to open'],
  [/repair it with check -r all first$/, 'repair it with Check & Repair first'],
  [/\(repair it with check -r all\)$/, '(repair it with Check & Repair)'],
  [/repair it first \(check -r all\)$/, 'repair it first with Check & Repair'],
  // An image another program is writing (block/lock.ts): the app offers "Open read-only anyway" instead of -U.
  [/; reading it now could show a half-written state \(give -U to read it anyway\)$/, '. Reading it meanwhile can show a half-written state; you can still open it read-only, knowing that.'],
];

/** A message of the engine as the app says it (see APP_WORDS). */
export function inAppWords(message: string): string {
  for (const [cli, app] of APP_WORDS) message = message.replace(cli, app);
  return message;
}

/** A failed call as the UI sees it: the code and the main side's plain message, in the app's words. */
export class ApiError extends Error {
  readonly code: DiskErrorCode;
  readonly path?: string;
  constructor(dto: DiskErrorDto) {
    super(inAppWords(dto.message));
    this.name = 'ApiError';
    this.code = dto.code;
    if (dto.path !== undefined) this.path = dto.path;
  }
}

function isDto(value: unknown): value is DiskErrorDto {
  const v = value as Partial<DiskErrorDto> | null;
  return typeof v === 'object' && v !== null && typeof v.code === 'string' && typeof v.message === 'string';
}

/** Whatever a bridge rejected with (a DTO, an Error, anything) as an ApiError with a message for people. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (isDto(err)) return new ApiError(err);
  if (err instanceof Error) return new ApiError({ code: 'EIO', message: err.message });
  return new ApiError({ code: 'EIO', message: String(err) });
}
