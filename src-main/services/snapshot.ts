import type { SnapshotInfo } from '../../src-shared/api';
import { DiskError } from '../block/errors';
import { resolveDriver } from '../registry';
import type { DiffRange, SnapshotOps } from '../block/types';

async function opsFor(path: string, format?: string): Promise<SnapshotOps> {
  const d = await resolveDriver(path, format);
  if (!d.snapshots) throw new DiskError('EUNSUPPORTED', `${d.name} images have no internal snapshots (qcow2 does)`, path);
  return d.snapshots;
}

export async function listSnapshots(path: string, format?: string): Promise<SnapshotInfo[]> {
  return (await opsFor(path, format)).list(path);
}
export async function createSnapshot(path: string, name: string, format?: string): Promise<void> {
  return (await opsFor(path, format)).create(path, name);
}
export async function applySnapshot(path: string, name: string, format?: string): Promise<void> {
  return (await opsFor(path, format)).apply(path, name);
}
export async function deleteSnapshot(path: string, name: string, format?: string): Promise<void> {
  return (await opsFor(path, format)).delete(path, name);
}
export async function diffSnapshots(path: string, a: string, b?: string, format?: string): Promise<DiffRange[]> {
  return (await opsFor(path, format)).diff(path, a, b);
}
