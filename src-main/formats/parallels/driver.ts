import { DiskError } from '../../block/errors';
import { headerOnlyDriver } from '../../block/header-only';

// Placeholder until the header layout is written: recognises nothing.
export const parallelsDriver = headerOnlyDriver('parallels', () => 0, async () => {
  throw new DiskError('EUNSUPPORTED', 'parallels: not supported yet');
});
