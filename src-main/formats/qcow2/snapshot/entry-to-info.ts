/** How a snapshot table entry is shown to people and programs: the SnapshotInfo of info and snapshot -l. */
import type { SnapshotInfo } from '../../../../src-shared/api';
import type { SnapshotEntry } from './table-codec';

/** A snapshot table entry as `info` and `snapshot -l` show it (qemu-img's JSON keys). */
export function snapshotInfo(s: SnapshotEntry): SnapshotInfo {
  const clock = s.vmClockNsec;
  return {
    id: s.id,
    name: s.name,
    'vm-state-size': s.vmStateSize,
    'date-sec': s.dateSec,
    'date-nsec': s.dateNsec,
    'vm-clock-sec': Number(clock / 1_000_000_000n),
    'vm-clock-nsec': Number(clock % 1_000_000_000n),
    ...(s.icount !== undefined && s.icount !== 0xffffffffffffffffn ? { icount: Number(s.icount) } : {}),
  } as SnapshotInfo;
}
