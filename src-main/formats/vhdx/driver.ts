import { DiskError } from '../../block/errors';
import { headerOnlyDriver } from '../../block/header-only';

// Placeholder until the header layout is written: recognises nothing.
export const vhdxDriver = headerOnlyDriver('vhdx', () => 0, async () => {
  throw new DiskError('EUNSUPPORTED', 'vhdx: not supported yet');
});
