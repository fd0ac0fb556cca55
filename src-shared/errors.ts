/** Error codes every layer uses. Messages speak to a person; codes are for programs. */
export type DiskErrorCode =
  | 'ENOENT' // the file does not exist
  | 'EISDIR' // a directory was given where an image was expected
  | 'EACCES' // the file cannot be read or written with the current permissions
  | 'EINVAL' // a bad argument: unknown format, bad size, bad option
  | 'ECORRUPT' // the image's metadata is inconsistent or points outside the file
  | 'EUNSUPPORTED' // a format or feature this build does not handle
  | 'EUNCLEAN' // the image was not closed cleanly; it must be repaired before writing
  | 'EREADONLY' // a write was attempted on an image opened read-only
  | 'ECANCELLED' // the job was cancelled by the user
  | 'EEXIST' // the target already exists
  | 'EOUTSIDE' // a backing file or extent lies outside the image's folder and was not allowed
  | 'EBUSY' // another program (a running VM, qemu-img) holds the image's lock
  | 'EBACKINGCHANGED' // the backing file changed since the image was made against it; reading needs an explicit accept
  | 'EIO'; // any other I/O failure

export interface DiskErrorDto {
  code: DiskErrorCode;
  message: string;
  path?: string;
}
