/**
 * What the wizards that work on a copy of the image share (Check & Repair, Compact): a job's outcome read into
 * the wizard's steps (a failure shows the 'failed' step with its error; a cancel of the work on the copy goes back
 * to the choice, since the image is exactly as it was), and "clean" as a check report says it.
 */
import type { CheckReport } from '../../src-shared/api';
import type { ApiError } from '../api';
import type { JobOutcome } from '../api/jobs';

/** The fields of a wizard's state these helpers read and set. */
export interface WorkingCopyState<Step extends string> {
  step: Step | 'failed';
  cancelled: boolean;
  error: ApiError | null;
}

/** A job's value; undefined when it failed (the wizard then shows its error) or the wizard moved on meanwhile. */
export function outcomeValue<T, Step extends string>(state: WorkingCopyState<Step>, outcome: JobOutcome<T> | undefined): T | undefined {
  if (!outcome) return undefined;
  if ('value' in outcome) return outcome.value;
  state.step = 'failed';
  return undefined;
}

/**
 * After the work on a copy ended: when the user cancelled it, nothing changed, so the wizard goes back to
 * `choice` without an error and true is returned; otherwise false (read the outcome with outcomeValue).
 */
export function backIfCancelled<T, Step extends string>(state: WorkingCopyState<Step>, outcome: JobOutcome<T> | undefined, choice: Step): boolean {
  if (!(outcome && 'error' in outcome && state.cancelled)) return false;
  state.error = null;
  state.step = choice;
  return true;
}

/** No damage, no leaked space and nothing the check could not read. */
export function reportClean(r: CheckReport | null): boolean {
  return !!r && r.corruptions === 0 && r.leaks === 0 && r['check-errors'] === 0;
}
