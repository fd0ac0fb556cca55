import type { DiskErrorCode, DiskErrorDto } from '../../src-shared/errors';

/** A failed call as the UI sees it: the code and plain message the main side chose. */
export class ApiError extends Error {
  readonly code: DiskErrorCode;
  readonly path?: string;
  constructor(dto: DiskErrorDto) {
    super(dto.message);
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
