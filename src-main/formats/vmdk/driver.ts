import { DiskError } from '../../block/errors';
import { headerOnlyDriver } from '../../block/header-only';

// Placeholder until the header layout is written: recognises nothing.
export const vmdkDriver = headerOnlyDriver('vmdk', () => 0, async () => {
  throw new DiskError('EUNSUPPORTED', 'vmdk: not supported yet');
});
