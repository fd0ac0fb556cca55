/**
 * "What is in this disk?": the partition table, the file system in each partition (or on the whole disk), the
 * readers that list and copy files, and the free-space map compaction uses. Works on any read-only byte view
 * (an opened image of any format). inside/ imports only block/.
 */
export type { ByteSource } from './source';
export type { FileSystemReader, FileRun, FileData } from './fs/reader';
export type * from './types';
export { WHOLE_DISK, inspectDisk, openVolume, type OpenVolume } from './inspect';
export { readFileData } from './read';
export { diskFreeMap, type DiskFreeMap, type PartitionFree } from './free';
