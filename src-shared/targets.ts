/** The contract's named targets: the hypervisors and clouds a disk can be made ready for (convert/lint --target). */
import type { FormatName } from './formats';

/** The hypervisors and clouds a disk can be made ready for (convert --target, lint --target). */
export type HostTargetName = 'azure' | 'esxi' | 'hyperv' | 'virtualbox' | 'kvm';
export const HOST_TARGET_NAMES: readonly HostTargetName[] = ['azure', 'esxi', 'hyperv', 'virtualbox', 'kvm'];

/** What a target leaves to the person: ESXi's subformat and SCSI controller, Hyper-V's 4 KiB sectors. */
export interface HostTargetChoice {
  subformat?: string;
  adapter?: 'lsilogic' | 'pvscsi';
  logicalSector4k?: boolean;
}

/** A target as the Convert wizard offers it. */
export interface HostTargetSummary {
  name: HostTargetName;
  label: string;
  description: string;
  format: FormatName;
}

/** One thing a target would refuse in an image, in a person's words. */
export interface HostTargetFinding {
  rule: string;
  message: string;
  fixable: boolean;
}

/** The "Ready for …" verdict of an image for one target; `findings` empty means ready. */
export interface HostTargetReport {
  target: HostTargetName;
  label: string;
  findings: HostTargetFinding[];
}

/** What a convert for a target will do to a source: the size it will have and what is worth saying. */
export interface HostTargetPlan {
  target: HostTargetName;
  format: FormatName;
  size: number;
  notes: string[];
}
