import { DiskError } from '../../block/errors';
import { headerOnlyDriver } from '../../block/header-only';

// Placeholder until the header layout is written: recognises nothing.
export const cowDriver = headerOnlyDriver('cow', () => 0, async () => {
  throw new DiskError('EUNSUPPORTED', 'cow: not supported yet');
});
